/**
 * The dpkg, dpkg-query and dpkg-deb command lines the dpkg installer runs, and the parsing of
 * what they print. On an endpoint the root is `/` and dpkg runs with its defaults; a scratch
 * root (tests, or an agent configured with another install root) gets
 * `--root=<root> --admindir=<admindir> --force-not-root --force-script-chrootless --force-bad-path`:
 * maintainer scripts then run on the host without chroot (there is no shell inside a scratch
 * root) with `DPKG_ROOT` set, and dpkg does not insist on being root or on the system PATH.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { InstallError } from '../../shared/errors.ts'
import { limitedEnv, type ProcessRunner, type RunResult } from './process-runner.ts'

/** Where dpkg works and which programs run it. */
export interface DpkgTarget {
  /** System root: `/` on an endpoint. */
  root: string
  /** dpkg database directory; `<root>/var/lib/dpkg` by default. */
  admindir: string
  dpkg: string
  dpkgQuery: string
  dpkgDeb: string
}

/** What dpkg-query says about a package. */
export interface PackageState {
  /** dpkg's status word: `installed`, `not-installed`, `config-files`, `half-configured`, … */
  status: string
  version?: string
  arch?: string
}

/** A Debian version usable as a file name (must start with a digit; epochs keep their colon). */
export const DEB_VERSION = /^[0-9][A-Za-z0-9.+~:-]{0,199}$/
const DEB_ARCH = /^[a-z0-9][a-z0-9-]{0,63}$/

export function dpkgTarget(options: Partial<DpkgTarget> = {}): DpkgTarget {
  const root = resolve(options.root ?? '/')
  return {
    root,
    admindir: resolve(options.admindir ?? join(root, 'var', 'lib', 'dpkg')),
    dpkg: options.dpkg ?? 'dpkg',
    dpkgQuery: options.dpkgQuery ?? 'dpkg-query',
    dpkgDeb: options.dpkgDeb ?? 'dpkg-deb',
  }
}

const isScratch = (t: DpkgTarget) => t.root !== '/'
const DEFAULT_ADMINDIR = '/var/lib/dpkg'

/** Options that point dpkg and dpkg-query at the target (nothing for the real root). */
function whereArgs(t: DpkgTarget): string[] {
  const args: string[] = []
  if (isScratch(t)) args.push(`--root=${t.root}`)
  if (isScratch(t) || t.admindir !== DEFAULT_ADMINDIR) args.push(`--admindir=${t.admindir}`)
  return args
}

/** The full `dpkg` argv for an action, e.g. `['--install', deb]` or `['--purge', pkg]`. */
export function dpkgArgv(t: DpkgTarget, action: string[]): string[] {
  const force = isScratch(t) ? ['--force-not-root', '--force-script-chrootless', '--force-bad-path'] : []
  // Unattended: keep a locally changed conffile's default answer instead of prompting.
  return [t.dpkg, ...whereArgs(t), ...force, '--force-confdef', '--force-confold', ...action]
}

export function dpkgQueryArgv(t: DpkgTarget, pkg: string): string[] {
  return [
    t.dpkgQuery,
    ...whereArgs(t),
    '--show',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${field} syntax
    '--showformat=${db:Status-Status}\\t${Version}\\t${Architecture}\\n',
    pkg,
  ]
}

/** Environment of dpkg and its maintainer scripts: C locale (parsable output), no prompts. */
export function dpkgEnv(): Record<string, string> {
  return limitedEnv({ LANG: 'C', LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' })
}

/** Parses `dpkg-query --show` output (one line) into a package state. */
export function parseQuery(stdout: string): PackageState {
  const line = stdout.split('\n').find((l) => l !== '') ?? ''
  const [status = '', version = '', arch = ''] = line.split('\t')
  if (!/^[a-z-]+$/.test(status)) throw new Error(`unexpected dpkg-query output ${JSON.stringify(line.slice(0, 200))}`)
  return {
    status,
    ...(version && DEB_VERSION.test(version) ? { version } : {}),
    ...(arch && DEB_ARCH.test(arch) ? { arch } : {}),
  }
}

/** Parses `dpkg-deb --field <deb> Package Version Architecture`. */
export function parseFields(stdout: string): Record<string, string> {
  const fields: Record<string, string> = {}
  for (const line of stdout.split('\n')) {
    const m = /^([A-Za-z][A-Za-z0-9-]*):\s*(.*)$/.exec(line)
    if (m) fields[m[1]!] = m[2]!.trim()
  }
  return fields
}

/** Whether dpkg refused because another dpkg/apt holds its lock (nothing was changed). */
export function isLocked(r: RunResult): boolean {
  return (
    r.exitCode === 2 &&
    /(database|lock) (is|was) locked by another process|unable to acquire the dpkg frontend lock/.test(r.stderr)
  )
}

/** Runs dpkg-query; `not-installed` when dpkg has never heard of the package. */
export async function queryPackage(runner: ProcessRunner, t: DpkgTarget, pkg: string): Promise<PackageState> {
  const r = await runner.run({ argv: dpkgQueryArgv(t, pkg), env: dpkgEnv(), timeoutMs: 60_000 })
  if (r.exitCode === 0) return parseQuery(r.stdout)
  if (r.exitCode === 1 && /no packages found matching/.test(r.stderr)) return { status: 'not-installed' }
  throw new InstallError('PSW_ERR_INSTALL_FAILED', `dpkg-query failed: ${r.stderr.trim().slice(-300)}`, {
    details: { exitCode: r.exitCode, stderr: r.stderr, spawnError: r.spawnError },
  })
}

/** Package, Version and Architecture of a .deb file (undefined if it is not a readable .deb). */
export async function debIdentity(
  runner: ProcessRunner,
  t: DpkgTarget,
  deb: string,
): Promise<{ package: string; version: string; arch: string } | undefined> {
  const r = await runner.run({
    argv: [t.dpkgDeb, '--field', deb, 'Package', 'Version', 'Architecture'],
    env: dpkgEnv(),
    timeoutMs: 60_000,
  })
  if (r.exitCode !== 0) return undefined
  const f = parseFields(r.stdout)
  const [pkg, version, arch] = [f.Package, f.Version, f.Architecture]
  if (!pkg || !version || !DEB_VERSION.test(version) || !arch || !DEB_ARCH.test(arch)) return undefined
  return { package: pkg, version, arch }
}

/** Creates an empty dpkg database in a scratch root; never touches the real root. */
export async function ensureScratchAdmindir(t: DpkgTarget): Promise<void> {
  if (!isScratch(t)) return
  const exists = await stat(join(t.admindir, 'status')).then(
    () => true,
    () => false,
  )
  if (exists) return
  for (const d of ['updates', 'info', 'triggers']) await mkdir(join(t.admindir, d), { recursive: true })
  await writeFile(join(t.admindir, 'status'), '', { flag: 'wx' }).catch(() => {})
}

/** The file name apt gives a package in its archive cache (`:` of an epoch becomes `%3a`). */
export function aptCacheName(pkg: string, version: string, arch: string): string {
  return `${pkg}_${version.replace(':', '%3a')}_${arch}.deb`
}
