import { createHash } from 'node:crypto'
import * as nodeOs from 'node:os'
import type { Logger } from 'pino'
import type { Clock } from '../../shared/clock.ts'
import { isPswError } from '../../shared/errors.ts'
import { type InventoryReportT, MAX_INVENTORY_REQUEST_BYTES } from '../../shared/protocol/control-protocol.ts'
import type { CommandRunner } from './command-runner.ts'
import { clip, collectAddresses, type OsInfo, type PlatformInventory } from './host-facts.ts'
import { createLinuxInventory } from './linux-inventory.ts'
import { createWindowsInventory } from './windows-inventory.ts'

/** The agent re-sends an unchanged inventory this often, so a restored appliance catches up. */
export const INVENTORY_RESEND_MS = 6 * 3_600_000
const SENT_KEY = 'inventory:last-sent'
const SEND_TIMEOUT_MS = 30_000

/** A bundle patchswarm installed here (from the agent's bundle states). */
export interface InstalledBundle {
  bundleId: string
  manifestVersion: number
}

/** The adapter for `platform`; other platforms report host facts and no packages. */
export function platformInventory(
  platform: NodeJS.Platform,
  deps: { clock: Clock; runner?: CommandRunner; os?: OsInfo },
): PlatformInventory {
  const os = deps.os ?? nodeOs
  const runner = deps.runner ? { runner: deps.runner } : {}
  if (platform === 'linux') return createLinuxInventory({ ...runner, os })
  if (platform === 'win32') return createWindowsInventory({ ...runner, os, clock: deps.clock })
  return {
    collect: async () => ({
      hostname: clip(os.hostname(), 255),
      os: { platform: clip(platform, 16), name: clip(platform, 128), kernel: clip(os.release(), 128), arch: os.arch() },
      addresses: collectAddresses(os.networkInterfaces()),
      packageManager: 'none',
      packages: [],
      reboot: { pending: false, reasons: [] },
    }),
  }
}

/** JSON with object keys sorted at every level: the same content always gives the same text. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  )
}

/** SHA-256 of the report's canonical JSON without `digest` and `collectedAt`. */
export function inventoryDigest(report: Omit<InventoryReportT, 'digest' | 'collectedAt'> & Partial<InventoryReportT>) {
  const { digest: _d, collectedAt: _c, ...content } = report
  return createHash('sha256').update(canonicalJson(content)).digest('hex')
}

const requestBytes = (report: InventoryReportT) =>
  Buffer.byteLength(JSON.stringify({ op: 'inventory', inventory: report }))

/**
 * Drops packages from the end (the report is sorted by name) until the whole request fits
 * `maxBytes`, and marks the report truncated. The digest must be computed afterwards.
 */
export function fitToFrame(report: InventoryReportT, maxBytes = MAX_INVENTORY_REQUEST_BYTES): InventoryReportT {
  if (requestBytes(report) <= maxBytes) return report
  const sized = (n: number): InventoryReportT => ({
    ...report,
    packages: report.packages.slice(0, n),
    packagesTruncated: true,
  })
  let lo = 0
  let hi = report.packages.length
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (requestBytes(sized(mid)) <= maxBytes) lo = mid
    else hi = mid - 1
  }
  return sized(lo)
}

export interface CollectDeps {
  adapter: PlatformInventory
  installed: () => Promise<InstalledBundle[]>
  agentVersion: string
  clock: Clock
  maxRequestBytes?: number
}

/** One inventory report: the platform's facts, what patchswarm installed, fitted and digested. */
export async function collectInventory(deps: CollectDeps, signal?: AbortSignal): Promise<InventoryReportT> {
  const facts = await deps.adapter.collect(signal)
  const installed = (await deps.installed())
    .map((b) => ({ bundleId: b.bundleId, manifestVersion: b.manifestVersion }))
    .sort((a, b) => (a.bundleId < b.bundleId ? -1 : a.bundleId > b.bundleId ? 1 : 0))
    .slice(0, 256)
  const report = fitToFrame(
    {
      formatVersion: 1,
      collectedAt: new Date(deps.clock.now()).toISOString(),
      digest: '0'.repeat(64),
      agentVersion: clip(deps.agentVersion, 40),
      ...facts,
      patchswarm: installed,
    },
    deps.maxRequestBytes,
  )
  return { ...report, digest: inventoryDigest(report) }
}

/** The part of the agent's state database the reporter uses. */
export interface InventoryStateStore {
  get<T>(key: string): Promise<T | undefined>
  put(key: string, value: unknown): Promise<void>
}

interface LastSent {
  digest: string
  at: number
  /** The appliance refused it with this code (not re-sent until it changes or is due). */
  refused?: string
}

export type InventorySyncResult = 'sent' | 'unchanged' | 'failed'

/** Failures of getting an answer at all: the next cycle tries again. */
const TRANSPORT_CODES = new Set([
  'PSW_ERR_APPLIANCE_UNREACHABLE',
  'PSW_ERR_PEER_TIMEOUT',
  'PSW_ERR_PROTOCOL',
  'PSW_ERR_INTERNAL',
])

export interface InventoryReporterDeps {
  collect: (signal?: AbortSignal) => Promise<InventoryReportT>
  store: InventoryStateStore
  clock: Clock
  log: Logger
  /** Default INVENTORY_RESEND_MS. */
  resendMs?: number
}

/**
 * Decides when the inventory goes to the appliance: when its digest differs from the last
 * one sent, or when the last send is `resendMs` old. The last digest is kept in the agent's
 * database, so a restart does not re-send an unchanged inventory. Collecting is cheap (see
 * the adapters), so `sync` may run every cycle.
 */
export class InventoryReporter {
  readonly #deps: InventoryReporterDeps
  readonly #resendMs: number

  constructor(deps: InventoryReporterDeps) {
    this.#deps = deps
    this.#resendMs = deps.resendMs ?? INVENTORY_RESEND_MS
  }

  async sync(
    send: (report: InventoryReportT, signal: AbortSignal) => Promise<unknown>,
    signal?: AbortSignal,
  ): Promise<InventorySyncResult> {
    const { store, clock, log } = this.#deps
    let report: InventoryReportT
    try {
      report = await this.#deps.collect(signal)
    } catch (err) {
      log.warn({ err: isPswError(err) ? err.toJSON() : err }, 'inventory not collected')
      return 'failed'
    }
    const now = clock.now()
    const last = await store.get<LastSent>(SENT_KEY)
    // A clock that went backwards makes the last send look recent forever: send then too.
    if (last?.digest === report.digest && now >= last.at && now - last.at < this.#resendMs) return 'unchanged'
    const timeout = AbortSignal.timeout(SEND_TIMEOUT_MS)
    try {
      await send(report, signal ? AbortSignal.any([signal, timeout]) : timeout)
    } catch (err) {
      if (!isPswError(err) || TRANSPORT_CODES.has(err.code)) {
        log.warn({ err: isPswError(err) ? err.toJSON() : err }, 'inventory not sent; will retry next cycle')
        return 'failed'
      }
      // A verdict on the report: sending the same again would get the same answer.
      log.warn({ err: err.toJSON(), digest: report.digest }, 'appliance refused the inventory')
      await store.put(SENT_KEY, { digest: report.digest, at: now, refused: err.code } satisfies LastSent)
      return 'failed'
    }
    await store.put(SENT_KEY, { digest: report.digest, at: now } satisfies LastSent)
    log.info({ digest: report.digest.slice(0, 12), packages: report.packages.length }, 'inventory sent')
    return 'sent'
  }
}

export interface AgentInventoryDeps {
  store: InventoryStateStore
  installed: () => Promise<InstalledBundle[]>
  agentVersion: string
  clock: Clock
  log: Logger
  platform?: NodeJS.Platform
  /** Overrides the platform's adapter (tests). */
  adapter?: PlatformInventory
  resendMs?: number
}

/** The agent's inventory: the adapter for this platform behind a reporter. */
export function createAgentInventory(deps: AgentInventoryDeps): InventoryReporter {
  const adapter = deps.adapter ?? platformInventory(deps.platform ?? process.platform, { clock: deps.clock })
  const collectDeps: CollectDeps = {
    adapter,
    installed: deps.installed,
    agentVersion: deps.agentVersion,
    clock: deps.clock,
  }
  return new InventoryReporter({
    collect: (signal) => collectInventory(collectDeps, signal),
    store: deps.store,
    clock: deps.clock,
    log: deps.log,
    ...(deps.resendMs === undefined ? {} : { resendMs: deps.resendMs }),
  })
}
