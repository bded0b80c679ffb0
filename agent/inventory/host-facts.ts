import type { NetworkInterfaceInfo } from 'node:os'
import { isPswError } from '../../shared/errors.ts'
import type { InventoryReportT } from '../../shared/protocol/control-protocol.ts'

/** What a platform adapter collects: the report minus what the agent itself adds. */
export type PlatformFacts = Pick<
  InventoryReportT,
  | 'hostname'
  | 'os'
  | 'addresses'
  | 'packageManager'
  | 'packages'
  | 'packagesTruncated'
  | 'hotfixes'
  | 'reboot'
  | 'errors'
>

export type InventoryIssue = NonNullable<InventoryReportT['errors']>[number]

/** One platform's inventory source (linux-inventory.ts, windows-inventory.ts). */
export interface PlatformInventory {
  collect(signal?: AbortSignal): Promise<PlatformFacts>
}

/** The host facts Node gives without running anything; injected in tests. */
export interface OsInfo {
  hostname(): string
  release(): string
  arch(): string
  networkInterfaces(): NodeJS.Dict<NetworkInterfaceInfo[]>
}

/** `value` cut to `max` characters (strings from the host are bounded before they go on the wire). */
export function clip(value: string, max: number): string {
  return value.length <= max ? value : value.slice(0, max)
}

/** Package order in a report: by name, then architecture (code-unit order, locale-independent). */
export function byNameAndArch(a: { name: string; arch?: string }, b: { name: string; arch?: string }): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1
  const x = a.arch ?? ''
  const y = b.arch ?? ''
  return x === y ? 0 : x < y ? -1 : 1
}

const MAX_ADDRESSES = 64

/**
 * The host's non-internal addresses, sorted so the digest does not change with the order
 * Node lists them in. IPv6 link-local addresses are kept (they identify the link).
 */
export function collectAddresses(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): PlatformFacts['addresses'] {
  const out: PlatformFacts['addresses'] = []
  for (const [name, infos] of Object.entries(interfaces)) {
    for (const info of infos ?? []) {
      if (info.internal) continue
      const family = info.family === 'IPv6' ? 'IPv6' : 'IPv4'
      const cidr = info.cidr ?? `${info.address}/${family === 'IPv4' ? 32 : 128}`
      const mac = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(info.mac) && info.mac !== '00:00:00:00:00:00' ? info.mac : ''
      out.push({ interface: clip(name, 64), family, cidr: clip(cidr, 64), ...(mac ? { mac: mac.toLowerCase() } : {}) })
    }
  }
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0)
  out.sort((a, b) => cmp(a.interface, b.interface) || cmp(a.family, b.family) || cmp(a.cidr, b.cidr))
  return out.slice(0, MAX_ADDRESSES)
}

/** A collection failure as a report entry: the rest of the inventory is still sent. */
export function issue(source: string, err: unknown): InventoryIssue {
  const code = isPswError(err) ? err.code : 'PSW_ERR_INTERNAL'
  const message = err instanceof Error ? err.message : String(err)
  return { source: clip(source, 32), code, message: clip(message, 500) }
}
