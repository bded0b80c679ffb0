import { readFile, stat } from 'node:fs/promises'
import * as nodeOs from 'node:os'
import { join } from 'node:path'
import { MAX_INVENTORY_PACKAGES, type PACKAGE_STATES } from '../../shared/protocol/control-protocol.ts'
import { type CommandRunner, runCommand } from './command-runner.ts'
import {
  byNameAndArch,
  clip,
  collectAddresses,
  type InventoryIssue,
  issue,
  type OsInfo,
  type PlatformFacts,
  type PlatformInventory,
} from './host-facts.ts'

/** The fields of os-release(5) the inventory uses. */
export interface OsRelease {
  id?: string
  idLike?: string[]
  name?: string
  prettyName?: string
  version?: string
  versionId?: string
  codename?: string
}

/** Unquotes one os-release value: "…" with \\ \" \$ \` escapes, '…' literally, or bare. */
function unquote(raw: string): string {
  const v = raw.trim()
  if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) return v.slice(1, -1)
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1).replace(/\\([\\"$`])/g, '$1')
  return v
}

/** Parses os-release(5): `KEY=value` lines, comments and blank lines ignored, unknown keys too. */
export function parseOsRelease(text: string): OsRelease {
  const fields = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(line)
    if (m) fields.set(m[1]!, unquote(m[2]!))
  }
  const get = (key: string) => {
    const v = fields.get(key)
    return v ? clip(v, 128) : undefined
  }
  const idLike = get('ID_LIKE')?.split(/\s+/).filter(Boolean)
  const out: OsRelease = {}
  const set = <K extends keyof OsRelease>(k: K, v: OsRelease[K] | undefined) => {
    if (v !== undefined) out[k] = v
  }
  set('id', get('ID')?.toLowerCase())
  set('idLike', idLike)
  set('name', get('NAME'))
  set('prettyName', get('PRETTY_NAME'))
  set('version', get('VERSION'))
  set('versionId', get('VERSION_ID'))
  set('codename', get('VERSION_CODENAME') ?? get('UBUNTU_CODENAME'))
  return out
}

/** The dpkg-query format: one tab-separated line per package. dpkg-query expands \t and \n. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} syntax, not a template
export const DPKG_QUERY_FORMAT = '${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n'

type PackageState = (typeof PACKAGE_STATES)[number]
/** Second letter of db:Status-Abbrev; `null`: not installed software (not reported). */
const STATUS_LETTERS: Record<string, PackageState | null> = {
  i: 'installed',
  H: 'half-installed',
  U: 'unpacked',
  F: 'half-configured',
  W: 'triggers-awaiting',
  t: 'triggers-pending',
  n: null,
  c: null,
}

export interface DpkgParseResult {
  packages: PlatformFacts['packages']
  /** More installed packages than `maxPackages`: the first ones by name were kept. */
  truncated: boolean
  /** Lines that did not have the expected shape (skipped). */
  malformed: number
}

/**
 * Parses the output of `dpkg-query -W -f=DPKG_QUERY_FORMAT`. Packages that are not installed
 * or only left config files are dropped; a broken install (half-installed, unpacked, …) is
 * kept with its state, a hold and the reinstall-required flag are kept as flags. Sorted by
 * name and architecture.
 */
export function parseDpkgQuery(text: string, maxPackages = MAX_INVENTORY_PACKAGES): DpkgParseResult {
  const packages: PlatformFacts['packages'] = []
  let malformed = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    const fields = line.split('\t')
    const [name, version, arch, status] = fields
    if (fields.length !== 4 || !name || version === undefined || arch === undefined || !status) {
      malformed++
      continue
    }
    const desired = status[0]
    const letter = status[1] ?? ''
    const state = STATUS_LETTERS[letter]
    if (state === undefined || !desired || !'uihrp'.includes(desired)) {
      malformed++
      continue
    }
    if (state === null) continue
    packages.push({
      name: clip(name, 256),
      version: clip(version, 128),
      ...(arch ? { arch: clip(arch, 32) } : {}),
      ...(state === 'installed' ? {} : { state }),
      ...(desired === 'h' ? { held: true } : {}),
      ...(status[2] === 'R' ? { reinstRequired: true } : {}),
    })
  }
  packages.sort(byNameAndArch)
  const truncated = packages.length > maxPackages
  return { packages: truncated ? packages.slice(0, maxPackages) : packages, truncated, malformed }
}

/** Package names from /run/reboot-required.pkgs: one per line, deduplicated, bounded. */
export function parseRebootPackages(text: string): string[] {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    const name = line.trim()
    if (name) names.add(clip(name, 256))
    if (names.size >= 256) break
  }
  return [...names]
}

export interface LinuxInventoryDeps {
  runner?: CommandRunner
  /** Where /etc, /var/lib/dpkg and /run are: `/` in production, a fixture tree in tests. */
  root?: string
  os?: OsInfo
  maxPackages?: number
  /** dpkg-query's time limit. */
  timeoutMs?: number
}

/** 20 000 lines of name, version and architecture stay far below this. */
const MAX_DPKG_OUTPUT_BYTES = 32 << 20

/**
 * The Linux adapter. Cheap to call every sync cycle: dpkg-query only runs again when
 * /var/lib/dpkg/status changed (dpkg replaces it on every change), everything else is a
 * small file read or a stat.
 */
export function createLinuxInventory(deps: LinuxInventoryDeps = {}): PlatformInventory {
  const root = deps.root ?? '/'
  const runner = deps.runner ?? runCommand
  const os = deps.os ?? nodeOs
  const maxPackages = deps.maxPackages ?? MAX_INVENTORY_PACKAGES
  const admindir = join(root, 'var/lib/dpkg')
  let cached: { stamp: string; result: DpkgParseResult } | undefined

  const readOsRelease = async (): Promise<OsRelease> => {
    try {
      return parseOsRelease(await readFile(join(root, 'etc/os-release'), 'utf8'))
    } catch {
      return parseOsRelease(await readFile(join(root, 'usr/lib/os-release'), 'utf8'))
    }
  }

  const packages = async (
    st: { ino: number; size: number; mtimeMs: number },
    signal: AbortSignal | undefined,
  ): Promise<DpkgParseResult> => {
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`
    if (cached?.stamp === stamp) return cached.result
    const args = ['-W', `-f=${DPKG_QUERY_FORMAT}`]
    if (root !== '/') args.unshift(`--admindir=${admindir}`)
    const out = await runner('dpkg-query', args, {
      maxBytes: MAX_DPKG_OUTPUT_BYTES,
      timeoutMs: deps.timeoutMs ?? 60_000,
      ...(signal ? { signal } : {}),
    })
    const result = parseDpkgQuery(Buffer.from(out).toString('utf8'), maxPackages)
    cached = { stamp, result }
    return result
  }

  const reboot = async (): Promise<PlatformFacts['reboot']> => {
    const flag = await stat(join(root, 'run/reboot-required')).catch(() => undefined)
    if (!flag) return { pending: false, reasons: [] }
    const pkgs = await readFile(join(root, 'run/reboot-required.pkgs'), 'utf8').catch(() => '')
    const names = parseRebootPackages(pkgs)
    return { pending: true, reasons: ['reboot-required'], ...(names.length ? { packages: names } : {}) }
  }

  return {
    async collect(signal) {
      const errors: InventoryIssue[] = []
      const release = await readOsRelease().catch((err: unknown) => {
        errors.push(issue('os-release', err))
        return {} as OsRelease
      })
      // No dpkg database: not a Debian-family system, no package manager we know.
      const status = await stat(join(admindir, 'status')).catch(() => undefined)
      const dpkg = status
        ? await packages(status, signal).catch((err: unknown) => {
            errors.push(issue('dpkg-query', err))
            return undefined
          })
        : undefined
      if (dpkg?.truncated)
        errors.push({ source: 'dpkg-query', code: 'PSW_ERR_TOO_LARGE', message: `more than ${maxPackages} packages` })
      if (dpkg && dpkg.malformed > 0)
        errors.push({ source: 'dpkg-query', code: 'PSW_ERR_SCHEMA', message: `${dpkg.malformed} unparsable lines` })
      return {
        hostname: clip(os.hostname(), 255),
        os: {
          platform: 'linux',
          ...(release.id ? { id: clip(release.id, 64) } : {}),
          name: release.prettyName ?? release.name ?? 'Linux',
          ...(release.versionId ? { versionId: clip(release.versionId, 64) } : {}),
          ...(release.codename ? { codename: clip(release.codename, 64) } : {}),
          kernel: clip(os.release(), 128),
          arch: clip(os.arch(), 32),
        },
        addresses: collectAddresses(os.networkInterfaces()),
        packageManager: status ? 'dpkg' : 'none',
        packages: dpkg?.packages ?? [],
        ...(dpkg?.truncated ? { packagesTruncated: true } : {}),
        reboot: await reboot(),
        ...(errors.length ? { errors } : {}),
      }
    },
  }
}
