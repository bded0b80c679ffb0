/**
 * The Windows adapter: PowerShell queries whose `ConvertTo-Json` output is parsed here. The
 * parsers are tested against fixtures in the formats Windows PowerShell 5.1 and PowerShell 7
 * really print (fixtures/win-*.json); the adapter itself is untested on real Windows.
 *
 * What the output may look like, and what the parsers accept:
 * - one object instead of an array (ConvertTo-Json unrolls a one-element pipeline), `null` or
 *   nothing at all for none;
 * - UTF-8 with or without BOM, or UTF-16LE with BOM (`Out-File` and `>` in PowerShell 5.1);
 * - dates as `/Date(ms)/`, `{ "value": "/Date(ms)/", "DateTime": "…" }` (5.1 serialising an
 *   extended DateTime), ISO 8601 (7.x), `M/d/yyyy` (the WMI string), `yyyyMMdd` (uninstall
 *   keys) or a hex FILETIME (old hotfix records);
 * - any field missing or null.
 */
import * as nodeOs from 'node:os'
import type { Clock } from '../../shared/clock.ts'
import { ValidationError } from '../../shared/errors.ts'
import { MAX_INVENTORY_PACKAGES } from '../../shared/protocol/control-protocol.ts'
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

const UTF8 = "[Console]::OutputEncoding = [Text.Encoding]::UTF8; $ErrorActionPreference = 'SilentlyContinue'; "

/** The PowerShell the adapter runs, one query per call (each parsed by the function named). */
export const WINDOWS_QUERIES = {
  /** parseOperatingSystem */
  os: `${UTF8}Get-CimInstance Win32_OperatingSystem | Select-Object Caption,Version,BuildNumber,OSArchitecture | ConvertTo-Json`,
  /** parseHotfixes */
  hotfixes: `${UTF8}Get-CimInstance Win32_QuickFixEngineering | Select-Object HotFixID,Description,InstalledOn | ConvertTo-Json`,
  /** parseUninstallEntries: both registry views and the per-machine keys only. */
  uninstall:
    `${UTF8}Get-ItemProperty 'HKLM:\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*',` +
    `'HKLM:\\Software\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*' | ` +
    'Select-Object DisplayName,DisplayVersion,Publisher,InstallDate,SystemComponent,ParentKeyName | ConvertTo-Json',
  /** parseRebootIndicators */
  reboot:
    `${UTF8}[pscustomobject]@{ ` +
    `RebootPending = Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\RebootPending'; ` +
    `RebootRequired = Test-Path 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\WindowsUpdate\\Auto Update\\RebootRequired'; ` +
    `PendingFileRenameOperations = (Get-ItemProperty 'HKLM:\\SYSTEM\\CurrentControlSet\\Control\\Session Manager' -Name PendingFileRenameOperations).PendingFileRenameOperations ` +
    '} | ConvertTo-Json',
} as const

/** What one query may print: far more than any real machine's uninstall keys. */
const MAX_QUERY_BYTES = 16 << 20

/** Decodes PowerShell output: UTF-16LE/BE by BOM (or by the zero bytes of UTF-16LE text), else UTF-8. */
export function decodePowerShellOutput(bytes: Uint8Array): string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xfe) return b.subarray(2).toString('utf16le')
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) {
    const swapped = Buffer.from(b.subarray(2, b.length - (b.length % 2)))
    return swapped.swap16().toString('utf16le')
  }
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return b.subarray(3).toString('utf8')
  // UTF-16LE without BOM: JSON starts with an ASCII character followed by a zero byte.
  if (b.length >= 2 && b[0] !== 0 && b[1] === 0) return b.toString('utf16le')
  return b.toString('utf8')
}

type JsonObject = Record<string, unknown>

/** ConvertTo-Json output as a list of objects: an array, one object, `null` or empty output. */
export function parseJsonList(output: Uint8Array | string, what: string): JsonObject[] {
  const text = (typeof output === 'string' ? output : decodePowerShellOutput(output)).replace(/^\uFEFF/, '').trim()
  if (text === '') return []
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ValidationError('PSW_ERR_SCHEMA', `${what} is not valid JSON`, { cause: err })
  }
  const list = Array.isArray(value) ? value : [value]
  return list.filter((v): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v))
}

const str = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v.trim() || undefined
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  return undefined
}

const iso = (ms: number): string | undefined => {
  if (!Number.isFinite(ms)) return undefined
  const d = new Date(ms)
  const y = d.getUTCFullYear()
  return y >= 1980 && y <= 2200 ? d.toISOString().slice(0, 10) : undefined
}

/** A valid calendar day as YYYY-MM-DD, or undefined. */
const day = (y: number, m: number, d: number): string | undefined => {
  const ms = Date.UTC(y, m - 1, d)
  const date = new Date(ms)
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== m - 1 || date.getUTCDate() !== d) return undefined
  return iso(ms)
}

/** FILETIME: 100 ns intervals since 1601-01-01 UTC. */
const FILETIME_EPOCH_OFFSET_MS = 11_644_473_600_000n

/** Any date form PowerShell prints (see the file comment) as YYYY-MM-DD; undefined if none. */
export function parseWindowsDate(value: unknown): string | undefined {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const o = value as JsonObject
    return parseWindowsDate(o['value']) ?? parseWindowsDate(o['DateTime'])
  }
  const s = str(value)
  if (!s) return undefined
  let m = /^\/Date\((-?\d{1,15})([+-]\d{4})?\)\/$/.exec(s)
  if (m) return iso(Number(m[1]))
  m = /^(\d{4})-(\d{2})-(\d{2})(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.exec(s)
  if (m) return day(Number(m[1]), Number(m[2]), Number(m[3]))
  m = /^(\d{4})(\d{2})(\d{2})$/.exec(s)
  if (m) return day(Number(m[1]), Number(m[2]), Number(m[3]))
  m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(s)
  if (m) return day(Number(m[3]), Number(m[1]), Number(m[2]))
  if (/^[0-9a-f]{16}$/i.test(s)) {
    const ms = BigInt(`0x${s}`) / 10_000n - FILETIME_EPOCH_OFFSET_MS
    return iso(Number(ms))
  }
  return undefined
}

/** Win32_QuickFixEngineering entries, deduplicated by HotFixID, sorted. */
export function parseHotfixes(output: Uint8Array | string): NonNullable<PlatformFacts['hotfixes']> {
  const byId = new Map<string, NonNullable<PlatformFacts['hotfixes']>[number]>()
  for (const o of parseJsonList(output, 'hotfix list')) {
    const id = str(o['HotFixID'])
    if (!id || byId.has(id)) continue
    const description = str(o['Description'])
    const installedOn = parseWindowsDate(o['InstalledOn'])
    byId.set(id, {
      id: clip(id, 32),
      ...(description ? { description: clip(description, 64) } : {}),
      ...(installedOn ? { installedOn } : {}),
    })
    if (byId.size >= 4096) break
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/**
 * Uninstall registry entries as packages: entries without DisplayName, system components
 * and child entries (ParentKeyName) are skipped as "Programs and Features" does; the same
 * name and version listed in both registry views count once. Sorted by name.
 */
export function parseUninstallEntries(
  output: Uint8Array | string,
  maxPackages = MAX_INVENTORY_PACKAGES,
): { packages: PlatformFacts['packages']; truncated: boolean } {
  const seen = new Set<string>()
  const packages: PlatformFacts['packages'] = []
  for (const o of parseJsonList(output, 'uninstall entries')) {
    const name = str(o['DisplayName'])
    if (!name) continue
    if (Number(o['SystemComponent']) === 1 || str(o['ParentKeyName'])) continue
    const version = clip(str(o['DisplayVersion']) ?? '', 128)
    const key = `${name}\u0000${version}`
    if (seen.has(key)) continue
    seen.add(key)
    const publisher = str(o['Publisher'])
    const installDate = parseWindowsDate(o['InstallDate'])
    packages.push({
      name: clip(name, 256),
      version,
      ...(publisher ? { publisher: clip(publisher, 256) } : {}),
      ...(installDate ? { installDate } : {}),
    })
  }
  packages.sort(byNameAndArch)
  const truncated = packages.length > maxPackages
  return { packages: truncated ? packages.slice(0, maxPackages) : packages, truncated }
}

const truthy = (v: unknown) => v === true || (typeof v === 'string' && v.toLowerCase() === 'true')

/**
 * The reboot-pending indicators: Component Based Servicing\RebootPending, WindowsUpdate\Auto
 * Update\RebootRequired, and a non-empty PendingFileRenameOperations (REG_MULTI_SZ: an array,
 * or a string when exported by hand).
 */
export function parseRebootIndicators(output: Uint8Array | string): PlatformFacts['reboot'] {
  const o = parseJsonList(output, 'reboot indicators')[0] ?? {}
  const reasons: PlatformFacts['reboot']['reasons'] = []
  if (truthy(o['RebootPending'])) reasons.push('cbs-reboot-pending')
  if (truthy(o['RebootRequired'])) reasons.push('wu-reboot-required')
  const renames = o['PendingFileRenameOperations']
  const list = Array.isArray(renames) ? renames : [renames]
  if (list.some((r) => typeof r === 'string' && r.trim() !== '')) reasons.push('pending-file-rename')
  return { pending: reasons.length > 0, reasons }
}

/** Win32_OperatingSystem: caption, version and build. */
export function parseOperatingSystem(output: Uint8Array | string): {
  name?: string
  versionId?: string
  build?: string
} {
  const o = parseJsonList(output, 'operating system')[0] ?? {}
  const name = str(o['Caption'])
  const versionId = str(o['Version'])
  const build = str(o['BuildNumber'])
  return {
    ...(name ? { name: clip(name, 128) } : {}),
    ...(versionId ? { versionId: clip(versionId, 64) } : {}),
    ...(build ? { build: clip(build, 128) } : {}),
  }
}

export interface WindowsInventoryDeps {
  runner?: CommandRunner
  os?: OsInfo
  clock: Clock
  /** PowerShell takes seconds to start: its answers are reused this long (default 15 min). */
  refreshMs?: number
  maxPackages?: number
  timeoutMs?: number
}

type Queried = Pick<PlatformFacts, 'packages' | 'packagesTruncated' | 'hotfixes' | 'reboot' | 'errors'> & {
  os: ReturnType<typeof parseOperatingSystem>
}

/** The Windows adapter: one PowerShell process per query, at most every `refreshMs`. */
export function createWindowsInventory(deps: WindowsInventoryDeps): PlatformInventory {
  const runner = deps.runner ?? runCommand
  const os = deps.os ?? nodeOs
  const refreshMs = deps.refreshMs ?? 15 * 60_000
  let cached: { at: number; value: Queried } | undefined

  const run = async (script: string, signal?: AbortSignal) =>
    runner('powershell.exe', ['-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-Command', script], {
      maxBytes: MAX_QUERY_BYTES,
      timeoutMs: deps.timeoutMs ?? 120_000,
      ...(signal ? { signal } : {}),
    })

  const query = async (signal?: AbortSignal): Promise<Queried> => {
    const errors: InventoryIssue[] = []
    const attempt = async <T>(source: string, script: string, parse: (out: Uint8Array) => T, fallback: T) => {
      try {
        return parse(await run(script, signal))
      } catch (err) {
        errors.push(issue(source, err))
        return fallback
      }
    }
    const osInfo = await attempt('win32-os', WINDOWS_QUERIES.os, parseOperatingSystem, {})
    const hotfixes = await attempt('hotfixes', WINDOWS_QUERIES.hotfixes, parseHotfixes, [])
    const uninstall = await attempt(
      'uninstall-keys',
      WINDOWS_QUERIES.uninstall,
      (out) => parseUninstallEntries(out, deps.maxPackages),
      { packages: [], truncated: false },
    )
    const reboot = await attempt('reboot', WINDOWS_QUERIES.reboot, parseRebootIndicators, {
      pending: false,
      reasons: [],
    })
    if (uninstall.truncated)
      errors.push({ source: 'uninstall-keys', code: 'PSW_ERR_TOO_LARGE', message: 'too many uninstall entries' })
    return {
      os: osInfo,
      packages: uninstall.packages,
      ...(uninstall.truncated ? { packagesTruncated: true } : {}),
      hotfixes,
      reboot,
      ...(errors.length ? { errors } : {}),
    }
  }

  return {
    async collect(signal) {
      const now = deps.clock.now()
      if (!cached || now - cached.at >= refreshMs || now < cached.at) cached = { at: now, value: await query(signal) }
      const { os: info, ...rest } = cached.value
      return {
        hostname: clip(os.hostname(), 255),
        os: {
          platform: 'win32',
          id: 'windows',
          name: info.name ?? 'Windows',
          ...(info.versionId ? { versionId: info.versionId } : {}),
          kernel: info.build ?? clip(os.release(), 128),
          arch: clip(os.arch(), 32),
        },
        addresses: collectAddresses(os.networkInterfaces()),
        packageManager: 'windows-uninstall',
        ...rest,
      }
    },
  }
}
