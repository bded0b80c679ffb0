import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { ProtocolError, ValidationError } from '../../shared/errors.ts'
import { silentLogger } from '../../shared/log.ts'
import {
  checkInventoryReport,
  type InventoryReportT,
  MAX_CONTROL_REQUEST_BYTES,
  MAX_INVENTORY_PACKAGES,
  MAX_INVENTORY_REQUEST_BYTES,
} from '../../shared/protocol/control-protocol.ts'
import type { PlatformFacts, PlatformInventory } from './host-facts.ts'
import {
  collectInventory,
  createAgentInventory,
  fitToFrame,
  INVENTORY_RESEND_MS,
  type InventoryStateStore,
  inventoryDigest,
  platformInventory,
} from './inventory.ts'

const facts = (
  packages: PlatformFacts['packages'] = [{ name: 'apt', version: '2.6.1', arch: 'amd64' }],
): PlatformFacts => ({
  hostname: 'pc-1',
  os: {
    platform: 'linux',
    id: 'debian',
    name: 'Debian GNU/Linux 12 (bookworm)',
    versionId: '12',
    kernel: '6.1.0',
    arch: 'x64',
  },
  addresses: [{ interface: 'eth0', family: 'IPv4', cidr: '10.0.0.7/24' }],
  packageManager: 'dpkg',
  packages,
  reboot: { pending: false, reasons: [] },
})

class MemoryStore implements InventoryStateStore {
  readonly map = new Map<string, unknown>()
  async get<T>(key: string) {
    return this.map.get(key) as T | undefined
  }
  async put(key: string, value: unknown) {
    this.map.set(key, structuredClone(value))
  }
}

const BUNDLE_A = 'a'.repeat(64)
const BUNDLE_B = 'b'.repeat(64)

/** `count` packages shaped like a real Debian system's. */
const manyPackages = (count: number, nameLength = 24): PlatformFacts['packages'] =>
  Array.from({ length: count }, (_, i) => ({
    name: `lib${String(i).padStart(6, '0')}${'x'.repeat(Math.max(0, nameLength - 9))}`,
    version: `1:2.${i}.0-4+deb12u1`,
    arch: 'amd64',
  }))

describe('inventory report', () => {
  it('digests content only: not collectedAt, not key order', () => {
    const clock = new ManualClock()
    const base = { formatVersion: 1 as const, agentVersion: '0.1.0', patchswarm: [], ...facts() }
    const d1 = inventoryDigest({ ...base, collectedAt: '2026-01-01T00:00:00.000Z' })
    const reordered = Object.fromEntries(Object.entries(base).reverse()) as typeof base
    expect(inventoryDigest({ ...reordered, collectedAt: new Date(clock.now() + 5).toISOString() })).toBe(d1)
    const changed = { ...base, packages: [{ name: 'apt', version: '2.6.2', arch: 'amd64' }] }
    expect(inventoryDigest(changed)).not.toBe(d1)
  })

  it('pins the digest: SHA-256 of JSON with keys sorted at every level (wire fixture)', () => {
    const canonical =
      '{"addresses":[{"cidr":"10.0.0.7/24","family":"IPv4","interface":"eth0"}],"agentVersion":"0.1.0",' +
      '"formatVersion":1,"hostname":"pc-1","os":{"arch":"x64","id":"debian","kernel":"6.1.0",' +
      '"name":"Debian GNU/Linux 12 (bookworm)","platform":"linux","versionId":"12"},"packageManager":"dpkg",' +
      '"packages":[{"arch":"amd64","name":"apt","version":"2.6.1"}],"patchswarm":[],"reboot":{"pending":false,"reasons":[]}}'
    const expected = '6ee0068a6658c8157c05cea0dd48941eeb0bc0513a9ea4ff7286f5c6fe8e3e10'
    expect(createHash('sha256').update(canonical).digest('hex')).toBe(expected)
    expect(inventoryDigest({ formatVersion: 1, agentVersion: '0.1.0', patchswarm: [], ...facts() })).toBe(expected)
  })

  it('adds what patchswarm installed, sorted, and passes the wire schema', async () => {
    const clock = new ManualClock()
    const adapter: PlatformInventory = { collect: async () => facts() }
    const report = await collectInventory({
      adapter,
      installed: async () => [
        { bundleId: BUNDLE_B, manifestVersion: 3 },
        { bundleId: BUNDLE_A, manifestVersion: 1 },
      ],
      agentVersion: '0.1.0',
      clock,
    })
    expect(checkInventoryReport.check(report)).toBe(report)
    expect(report.patchswarm).toEqual([
      { bundleId: BUNDLE_A, manifestVersion: 1 },
      { bundleId: BUNDLE_B, manifestVersion: 3 },
    ])
    expect(report.collectedAt).toBe('2026-01-01T00:00:00.000Z')
    expect(report.digest).toBe(inventoryDigest(report))
  })

  it('fits 20 000 realistic packages in the inventory frame limit, but not in the ordinary one', async () => {
    const report = await collectInventory({
      adapter: { collect: async () => facts(manyPackages(MAX_INVENTORY_PACKAGES)) },
      installed: async () => [],
      agentVersion: '0.1.0',
      clock: new ManualClock(),
    })
    expect(report.packagesTruncated).toBeUndefined()
    expect(report.packages).toHaveLength(MAX_INVENTORY_PACKAGES)
    const size = Buffer.byteLength(JSON.stringify({ op: 'inventory', inventory: report }))
    expect(size).toBeGreaterThan(MAX_CONTROL_REQUEST_BYTES)
    expect(size).toBeLessThan(MAX_INVENTORY_REQUEST_BYTES / 2)
  })

  it('drops packages from the end until the request fits, and marks it truncated', async () => {
    const report = await collectInventory({
      adapter: { collect: async () => facts(manyPackages(MAX_INVENTORY_PACKAGES, 250)) },
      installed: async () => [],
      agentVersion: '0.1.0',
      clock: new ManualClock(),
    })
    const size = Buffer.byteLength(JSON.stringify({ op: 'inventory', inventory: report }))
    expect(size).toBeLessThanOrEqual(MAX_INVENTORY_REQUEST_BYTES)
    expect(size).toBeGreaterThan(MAX_INVENTORY_REQUEST_BYTES - 400)
    expect(report.packagesTruncated).toBe(true)
    expect(report.packages.length).toBeLessThan(MAX_INVENTORY_PACKAGES)
    expect(report.digest).toBe(inventoryDigest(report))
    expect(checkInventoryReport.is(report)).toBe(true)
    // small reports are left alone
    const small = { ...report, packages: report.packages.slice(0, 3), packagesTruncated: undefined }
    delete small.packagesTruncated
    expect(fitToFrame(small)).toBe(small)
  })

  it('picks an adapter by platform; unknown platforms report host facts only', async () => {
    const clock = new ManualClock()
    const other = await platformInventory('freebsd', { clock }).collect()
    expect(other).toMatchObject({ packageManager: 'none', packages: [], os: { platform: 'freebsd' } })
    expect(typeof platformInventory('linux', { clock }).collect).toBe('function')
    expect(typeof platformInventory('win32', { clock }).collect).toBe('function')
  })
})

describe('inventory reporter', () => {
  const setup = () => {
    const clock = new ManualClock()
    const store = new MemoryStore()
    let current = facts()
    const sent: InventoryReportT[] = []
    let failWith: Error | undefined
    const make = () =>
      createAgentInventory({
        store,
        installed: async () => [],
        agentVersion: '0.1.0',
        clock,
        log: silentLogger(),
        adapter: { collect: async () => current },
      })
    const send = async (r: InventoryReportT, signal: AbortSignal) => {
      expect(signal).toBeInstanceOf(AbortSignal)
      if (failWith) throw failWith
      sent.push(r)
      return { accepted: true }
    }
    return {
      clock,
      store,
      sent,
      send,
      make,
      set: (f: PlatformFacts) => {
        current = f
      },
      fail: (err: Error | undefined) => {
        failWith = err
      },
    }
  }

  it('sends on change, not when unchanged, and again after the resend period', async () => {
    const s = setup()
    const reporter = s.make()
    expect(await reporter.sync(s.send)).toBe('sent')
    s.clock.advance(60_000)
    expect(await reporter.sync(s.send)).toBe('unchanged')
    s.set(facts([{ name: 'apt', version: '2.6.2', arch: 'amd64' }]))
    expect(await reporter.sync(s.send)).toBe('sent')
    expect(s.sent).toHaveLength(2)
    expect(s.sent[1]!.digest).not.toBe(s.sent[0]!.digest)
    s.clock.advance(INVENTORY_RESEND_MS - 1)
    expect(await reporter.sync(s.send)).toBe('unchanged')
    s.clock.advance(1)
    expect(await reporter.sync(s.send)).toBe('sent')
    expect(s.sent[2]!.digest).toBe(s.sent[1]!.digest)
  })

  it('remembers the last digest across a restart', async () => {
    const s = setup()
    expect(await s.make().sync(s.send)).toBe('sent')
    s.clock.advance(1000)
    expect(await s.make().sync(s.send)).toBe('unchanged')
  })

  it('retries after a transport failure, but not after the appliance refused the same report', async () => {
    const s = setup()
    const reporter = s.make()
    s.fail(new ProtocolError('PSW_ERR_APPLIANCE_UNREACHABLE', 'no route'))
    expect(await reporter.sync(s.send)).toBe('failed')
    s.fail(new Error('stream reset'))
    expect(await reporter.sync(s.send)).toBe('failed')
    s.fail(undefined)
    expect(await reporter.sync(s.send)).toBe('sent')

    s.set(facts([]))
    s.fail(new ValidationError('PSW_ERR_SCHEMA', 'request does not match its schema'))
    expect(await reporter.sync(s.send)).toBe('failed')
    s.fail(undefined)
    expect(await reporter.sync(s.send)).toBe('unchanged')
    s.clock.advance(INVENTORY_RESEND_MS)
    expect(await reporter.sync(s.send)).toBe('sent')
  })

  it('sends when the clock went backwards, and survives a failing adapter', async () => {
    const s = setup()
    const reporter = s.make()
    expect(await reporter.sync(s.send)).toBe('sent')
    s.clock.advance(-60_000)
    expect(await reporter.sync(s.send)).toBe('sent')
    const broken = createAgentInventory({
      store: s.store,
      installed: async () => [],
      agentVersion: '0.1.0',
      clock: s.clock,
      log: silentLogger(),
      adapter: {
        collect: async () => {
          throw new Error('boom')
        },
      },
    })
    expect(await broken.sync(s.send)).toBe('failed')
  })
})
