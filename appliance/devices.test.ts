import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../shared/log.ts'
import type { ByteStream } from '../shared/protocol/byte-stream.ts'
import {
  type ControlRequest,
  controlCall,
  type InventoryReportT,
  MAX_INVENTORY_REQUEST_BYTES,
  serveControl,
} from '../shared/protocol/control-protocol.ts'
import { createControlHandler } from './control-handler.ts'
import { DeviceRegistry } from './devices.ts'
import { enrollNewAgent, newTestAgent, openTestAppliance, rejectionCode, type TestAppliance } from './test-fixtures.ts'

/** One direction of an in-memory stream. */
class Pipe {
  readonly chunks: Uint8Array[] = []
  ended = false
  #wake: (() => void) | undefined
  push(c: Uint8Array) {
    this.chunks.push(c)
    this.#wake?.()
  }
  end() {
    this.ended = true
    this.#wake?.()
  }
  async *read(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const c = this.chunks.shift()
      if (c) yield c
      else if (this.ended) return
      else await new Promise<void>((r) => (this.#wake = r))
    }
  }
}

/** Two connected ByteStreams (what a yamux stream gives each side), without libp2p. */
function streamPair(): [ByteStream, ByteStream] {
  const ab = new Pipe()
  const ba = new Pipe()
  const side = (inbound: Pipe, outbound: Pipe): ByteStream => ({
    [Symbol.asyncIterator]: () => inbound.read(),
    send(data) {
      // Split like a transport would, so framing is exercised across reads.
      const bytes = data instanceof Uint8Array ? data : data.subarray()
      for (let i = 0; i < bytes.length; i += 64 << 10) outbound.push(bytes.subarray(i, i + (64 << 10)))
      return true
    },
    async close() {
      outbound.end()
    },
    abort() {
      outbound.end()
      inbound.end()
    },
    addEventListener() {},
    removeEventListener() {},
    status: 'open',
    writeBufferLength: 0,
  })
  return [side(ba, ab), side(ab, ba)]
}

const inventory = (packages = 3): InventoryReportT => ({
  formatVersion: 1,
  collectedAt: '2026-01-01T00:00:00.000Z',
  digest: 'c'.repeat(64),
  agentVersion: '0.1.0',
  hostname: 'pc-0042.branch.local',
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
  packages: Array.from({ length: packages }, (_, i) => ({
    name: `package-number-${i}`,
    version: `1:2.3~rc1-${i}+deb12u1`,
    arch: 'amd64',
  })),
  patchswarm: [],
  reboot: { pending: true, reasons: ['reboot-required'], packages: ['linux-image-6.1.0-18-amd64'] },
})

describe('inventory over the control protocol', () => {
  let t: TestAppliance
  beforeEach(async () => {
    t = await openTestAppliance()
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const call = async (peerId: string, request: ControlRequest) => {
    const handler = createControlHandler({
      assignments: t.core.assignments,
      catalog: t.core.catalog,
      devices: t.core.devices,
      members: {} as never,
      swarm: {} as never,
      clock: t.clock,
      log: silentLogger(),
    })
    const [client, server] = streamPair()
    const served = serveControl(server, handler(peerId))
    try {
      return await controlCall(client, request)
    } finally {
      await served
    }
  }

  it('stores the latest inventory for the calling device and updates lastSeen and the summary', async () => {
    const agent = await enrollNewAgent(t.core, 'pc-0042')
    await t.core.devices.setTags(agent.peerId, ['Berlin', 'kiosk'])
    t.clock.advance(5000)
    const result = await call(agent.peerId, { op: 'inventory', inventory: inventory() })
    expect(result).toEqual({ accepted: true, digest: 'c'.repeat(64) })
    const stored = await t.core.devices.getInventory(agent.peerId)
    expect(stored).toEqual({ receivedAt: new Date(t.clock.now()).toISOString(), inventory: inventory() })
    const rec = await t.core.devices.get(agent.peerId)
    expect(rec).toMatchObject({
      lastSeen: new Date(t.clock.now()).toISOString(),
      tags: ['berlin', 'kiosk'],
      inventory: {
        digest: 'c'.repeat(64),
        hostname: 'pc-0042.branch.local',
        packages: 3,
        rebootPending: true,
        os: { id: 'debian', versionId: '12' },
      },
    })
    // the full package list stays out of the device record (lists stay cheap)
    expect(JSON.stringify(rec)).not.toContain('package-number-0')
    // durable
    await t.reopen()
    expect((await t.core.devices.getInventory(agent.peerId))?.inventory.packages).toHaveLength(3)
  })

  it('refuses a peer without a device record', async () => {
    const stranger = await newTestAgent()
    expect(await rejectionCode(call(stranger.peerId, { op: 'inventory', inventory: inventory() }))).toBe(
      'PSW_ERR_NOT_ENROLLED',
    )
    expect(await t.core.devices.getInventory(stranger.peerId)).toBeUndefined()
  })

  it('allows the larger frame for inventory only', async () => {
    const agent = await enrollNewAgent(t.core, 'pc-1')
    // ~ 700 KB: above the ordinary 256 KiB request limit
    const big = inventory(10_000)
    expect(await call(agent.peerId, { op: 'inventory', inventory: big })).toMatchObject({ accepted: true })
    expect((await t.core.devices.get(agent.peerId))?.inventory?.packages).toBe(10_000)
    // a report of the same size is still refused by the ordinary limit
    const bundle = {
      bundleId: 'd'.repeat(64),
      state: 'failed' as const,
      chunksHave: 0,
      chunksTotal: 1,
      transfer: { bytesFromAppliance: 0, bytesFromPeers: 0, bytesServed: 0 },
      error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'x'.repeat(2000) },
    }
    const report = { agentVersion: '0.1.0', hostname: 'pc-1', bundles: Array.from({ length: 200 }, () => bundle) }
    expect(await rejectionCode(call(agent.peerId, { op: 'report', report }))).toBe('PSW_ERR_MESSAGE_TOO_LARGE')
    // and inventory has its own ceiling
    const huge = inventory(0)
    huge.packages = Array.from({ length: 20_000 }, (_, i) => ({ name: `p${i}-${'n'.repeat(200)}`, version: '1' }))
    expect(Buffer.byteLength(JSON.stringify(huge))).toBeGreaterThan(MAX_INVENTORY_REQUEST_BYTES)
    expect(await rejectionCode(call(agent.peerId, { op: 'inventory', inventory: huge }))).toBe(
      'PSW_ERR_MESSAGE_TOO_LARGE',
    )
  })

  it('refuses an inventory that breaks its schema', async () => {
    const agent = await enrollNewAgent(t.core, 'pc-1')
    const bad = { ...inventory(), packages: [{ name: '', version: '1' }] }
    expect(await rejectionCode(call(agent.peerId, { op: 'inventory', inventory: bad }))).toBe('PSW_ERR_SCHEMA')
  })
})

describe('device tags and tier', () => {
  let t: TestAppliance
  beforeEach(async () => {
    t = await openTestAppliance()
  })
  afterEach(async () => {
    await t.cleanup()
  })

  it('normalises tags and refuses bad ones; unknown devices are not found', async () => {
    const { peerId } = await enrollNewAgent(t.core, 'pc-1')
    expect((await t.core.devices.setTags(peerId, ['Kiosk', 'berlin', 'kiosk', ' site:ber-1 '])).tags).toEqual([
      'berlin',
      'kiosk',
      'site:ber-1',
    ])
    for (const bad of [
      ['has space'],
      ['-dash-first'],
      ['x'.repeat(65)],
      Array.from({ length: 33 }, (_, i) => `t${i}`),
    ]) {
      expect(await rejectionCode(t.core.devices.setTags(peerId, bad))).toBe('PSW_ERR_INVALID_ARGUMENT')
    }
    expect((await t.core.devices.get(peerId))?.tags).toEqual(['berlin', 'kiosk', 'site:ber-1'])
    const stranger = await newTestAgent()
    expect(await rejectionCode(t.core.devices.setTags(stranger.peerId, ['x']))).toBe('PSW_ERR_NOT_FOUND')
    expect(await rejectionCode(t.core.devices.setTier(stranger.peerId, 'low'))).toBe('PSW_ERR_NOT_FOUND')
    expect(await rejectionCode(t.core.devices.setTier(peerId, 'urgent' as never))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect((await t.core.devices.setTier(peerId, 'critical')).tier).toBe('critical')
  })

  it('never loses the operator’s tags to a concurrent agent report, nor the report to a tag change', async () => {
    const { peerId } = await enrollNewAgent(t.core, 'pc-1')
    const report = { agentVersion: '0.1.0', hostname: 'pc-1', bundles: [] }
    await Promise.all([
      t.core.devices.recordReport(peerId, report, t.clock.now()),
      t.core.devices.setTags(peerId, ['a']),
      t.core.devices.setTier(peerId, 'high'),
      t.core.devices.recordInventory(peerId, inventory(), t.clock.now()),
      t.core.devices.recordReport(peerId, report, t.clock.now()),
    ])
    const rec = await t.core.devices.get(peerId)
    expect(rec).toMatchObject({ tags: ['a'], tier: 'high', report, inventory: { packages: 3 } })
  })
})

describe('device records in memory', () => {
  let t: TestAppliance
  beforeEach(async () => {
    t = await openTestAppliance()
  })
  afterEach(async () => {
    await t.cleanup()
  })

  it('hold what the database holds, in PeerId order, after every kind of update', async () => {
    const peers = [
      (await enrollNewAgent(t.core, 'pc-1')).peerId,
      (await enrollNewAgent(t.core, 'pc-2')).peerId,
      (await enrollNewAgent(t.core, 'pc-3')).peerId,
    ]
    await t.core.devices.setTags(peers[0]!, ['kiosk'])
    await t.core.devices.setTier(peers[1]!, 'low')
    await t.core.devices.recordReport(peers[2]!, { agentVersion: '0.1.0', hostname: 'pc-3', bundles: [] }, 5)
    await t.core.devices.recordInventory(peers[0]!, inventory(), 6)
    const listed = await t.core.devices.list()
    expect(listed.map((d) => d.peerId)).toEqual([...peers].sort())
    const fromDisk = new DeviceRegistry(t.core.db)
    await fromDisk.load()
    expect(await fromDisk.list()).toEqual(listed)
    expect(await t.core.devices.get(peers[0]!)).toMatchObject({ tags: ['kiosk'], inventory: { packages: 3 } })
    expect(t.core.devices.members().sort()).toEqual([...peers].sort())
    // A later enrollment shows up, in order.
    const late = (await enrollNewAgent(t.core, 'pc-4')).peerId
    expect((await t.core.devices.list()).map((d) => d.peerId)).toEqual([...peers, late].sort())
    expect(t.core.devices.isMember(late)).toBe(true)
  })

  it('a write that fails leaves the record as it was; admitted() without putOps() is a bug', async () => {
    const { peerId } = await enrollNewAgent(t.core, 'pc-1')
    let fail = true
    const db = {
      ...t.core.db,
      async batch(ops: Parameters<typeof t.core.db.batch>[0]) {
        if (fail) throw new Error('injected: disk full')
        return t.core.db.batch(ops)
      },
    }
    const registry = new DeviceRegistry(db)
    await registry.load()
    const before = await registry.get(peerId)
    const report = { agentVersion: '0.1.0', hostname: 'pc-1', bundles: [] }
    await expect(registry.recordReport(peerId, report, 5)).rejects.toThrow(/injected/)
    await expect(registry.setTags(peerId, ['x'])).rejects.toThrow(/injected/)
    expect(await registry.get(peerId)).toEqual(before)
    fail = false
    await registry.recordReport(peerId, report, 5)
    expect(await registry.get(peerId)).toMatchObject({ report, lastSeen: new Date(5).toISOString() })
    expect(() => registry.admitted('12D3KooWnotputyet')).toThrow(/without putOps/)
  })
})
