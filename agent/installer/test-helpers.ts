/**
 * Test helpers for the installers: a validated manifest whose content is real bytes (real
 * chunk hashes), written to a file and read back through `readVerified()` as the agent does.
 */
import { spawnSync } from 'node:child_process'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { chunkCount, chunkLength, MIN_CHUNK_SIZE, sha256Hex } from '../../shared/content/chunking.ts'
import { type Manifest, validateManifest } from '../../shared/metadata/manifest-schema.ts'
import { readVerified } from '../verified-reader.ts'

/** A bundle on disk and the manifest that describes it. */
export interface TestBundle {
  manifest: Manifest
  path: string
  openVerified: () => AsyncIterable<Uint8Array>
}

/** Writes `bytes` to `dir/<name>` and returns a manifest (validated) for it, with `changes` applied. */
export async function testBundle(
  dir: string,
  name: string,
  bytes: Uint8Array,
  changes: Partial<Manifest>,
  patch: Partial<Manifest['patch']> = {},
): Promise<TestBundle> {
  const chunkSize = MIN_CHUNK_SIZE
  const chunks: string[] = []
  for (let i = 0; i < chunkCount(bytes.length, chunkSize); i++) {
    const start = i * chunkSize
    chunks.push(sha256Hex(bytes.subarray(start, start + chunkLength(i, bytes.length, chunkSize))))
  }
  const sha256 = sha256Hex(bytes)
  const manifest = validateManifest({
    type: 'patchswarm/manifest',
    specVersion: 1,
    bundleId: sha256,
    version: 1,
    created: '2026-01-01T00:00:00.000Z',
    expires: '2036-01-01T00:00:00.000Z',
    patch: {
      name,
      vendor: 'test',
      product: name,
      version: '1.0',
      classification: 'bugfix',
      severity: 'low',
      cves: [],
      supersedes: [],
      requires: [],
      platform: { os: 'any', arch: 'any' },
      ...patch,
    },
    install: { type: 'files', targetRoot: '/opt/x', maxRunSeconds: 60 },
    rollback: { type: 'none' },
    content: { size: bytes.length, chunkSize, sha256, chunks, format: 'raw' },
    ...changes,
  })
  await mkdir(dir, { recursive: true })
  const path = join(dir, `${name}-${sha256.slice(0, 8)}.bin`)
  await writeFile(path, bytes)
  return { manifest, path, openVerified: () => readVerified(path, manifest) }
}

/** Whether dpkg-deb and dpkg can run here (the dpkg tests skip cleanly without them, unless CI is set). */
export function haveDpkg(): boolean {
  return ['dpkg-deb', 'dpkg', 'dpkg-query'].every((p) => spawnSync(p, ['--version'], { stdio: 'ignore' }).status === 0)
}

/** One package to build with `dpkg-deb --build`. */
export interface DebSpec {
  name: string
  version: string
  /** Files under the package root, e.g. `{ 'opt/demo/version.txt': 'v1' }`. */
  files: Record<string, string>
  /** postinst script text (run chrootless in a scratch root: use `$DPKG_ROOT`). */
  postinst?: string
}

/** Builds a tiny real .deb in `dir` and returns its bytes. */
export async function buildDeb(dir: string, spec: DebSpec): Promise<Buffer> {
  const tree = join(dir, `${spec.name}-${spec.version}-tree`)
  await mkdir(join(tree, 'DEBIAN'), { recursive: true })
  const control = `Package: ${spec.name}\nVersion: ${spec.version}\nArchitecture: all\nMaintainer: patchswarm tests <t@example.invalid>\nDescription: patchswarm test package\n`
  await writeFile(join(tree, 'DEBIAN', 'control'), control)
  if (spec.postinst !== undefined) {
    await writeFile(join(tree, 'DEBIAN', 'postinst'), spec.postinst)
    await chmod(join(tree, 'DEBIAN', 'postinst'), 0o755)
  }
  for (const [rel, text] of Object.entries(spec.files)) {
    await mkdir(join(tree, rel, '..'), { recursive: true })
    await writeFile(join(tree, rel), text)
  }
  const out = join(dir, `${spec.name}_${spec.version}_all.deb`)
  const r = spawnSync('dpkg-deb', ['--root-owner-group', '--build', tree, out], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`dpkg-deb --build failed: ${r.stderr}`)
  return readFile(out)
}
