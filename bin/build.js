// Bundles the TypeScript sources of the CLI with esbuild (our code only; node_modules stay
// external) into dist/cli-*/, split per command so a process loads only what it runs (the
// agent never loads fastify, the appliance never loads the installer). Running compiled
// JavaScript instead of transpiling at start-up saves ~60 MB of RSS per process and most of
// the start-up time.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { mkdir, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..')
const DIST = join(REPO, 'dist')
const POINTER = join(DIST, 'current.json')
const SOURCE_DIRS = ['shared', 'appliance', 'agent', 'bin']
const KEEP_OLD_BUILDS_MS = 3_600_000

function newestSource(dir, newest = 0) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = newestSource(path, newest)
    else if (/\.(ts|js)$/.test(entry.name) && !entry.name.endsWith('.test.ts'))
      newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/** True when there is no build or it is older than any source file. */
export function isStale() {
  if (!existsSync(POINTER)) return true
  const built = statSync(POINTER).mtimeMs
  return SOURCE_DIRS.some((d) => newestSource(join(REPO, d)) > built)
}

/** The entry module of the current build. */
export function entryPath() {
  const { dir } = JSON.parse(readFileSync(POINTER, 'utf8'))
  return join(DIST, dir, 'patchswarm.js')
}

export async function build() {
  const esbuild = await import('esbuild')
  const dir = `cli-${Date.now().toString(36)}-${process.pid}`
  const tmp = join(DIST, `.tmp-${dir}`)
  await mkdir(DIST, { recursive: true })
  await esbuild.build({
    entryPoints: [join(REPO, 'bin', 'patchswarm.ts')],
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Dependencies are bundled too (loading libp2p's hundreds of ESM files one by one cost
    // about a CPU-second per process start); native and worker-based ones stay external.
    external: ['classic-level', 'level', 'esbuild', 'pino', 'thread-stream', 'fastify', '@fastify/*', '@node-rs/*'],
    keepNames: true,
    // Bundled CommonJS dependencies call require() for Node built-ins.
    banner: {
      js: "import { createRequire as __pswRequire } from 'node:module'; const require = __pswRequire(import.meta.url);",
    },
    outdir: tmp,
    logLevel: 'warning',
  })
  // Several processes may build at once (tests): each builds into its own directory, then
  // the pointer is replaced atomically. Old builds go after an hour (a process that started
  // from one has loaded its modules long before).
  await rename(tmp, join(DIST, dir))
  const pointerTmp = `${POINTER}.${process.pid}.tmp`
  await writeFile(pointerTmp, JSON.stringify({ dir }))
  await rename(pointerTmp, POINTER)
  for (const old of readdirSync(DIST)) {
    if (old === dir || !/^(cli-|\.tmp-cli-)/.test(old)) continue
    const path = join(DIST, old)
    if (Date.now() - statSync(path).mtimeMs > KEEP_OLD_BUILDS_MS) await rm(path, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await build()
  process.stderr.write(`built ${entryPath()}\n`)
}
