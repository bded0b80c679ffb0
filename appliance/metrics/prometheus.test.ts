import { register as globalRegistry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import type { DeviceRecord } from '../devices.ts'
import { applianceUploadedFromSwarm, deliveredFromDevices, sumDelivered } from './delivered.ts'
import { createMetrics, type MetricsSources } from './prometheus.ts'
import { parseExposition, type Sample } from './test-exposition.ts'
import type { ArtifactUsage, WanTotals } from './wan-counters.ts'

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) => {
  const found = samples.filter((s) => s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels))
  expect(found, name).toHaveLength(1)
  return found[0]!.value
}

function fakeWan(totals: Partial<WanTotals>, artifacts: ArtifactUsage[] = []): MetricsSources['wan'] {
  return {
    totals: () => ({ totalBytes: 0, artifactBytes: 0, indexBytes: 0, todayBytes: 0, ...totals }),
    days: () => [],
    recentArtifacts: (limit = Number.POSITIVE_INFINITY) => artifacts.slice(0, limit),
  }
}

const sha = (c: string) => c.repeat(64)

describe('createMetrics', () => {
  const sources = (over: Partial<MetricsSources> = {}): MetricsSources => ({
    wan: fakeWan({ totalBytes: 1_300, artifactBytes: 1_000, indexBytes: 300, todayBytes: 200 }, [
      { sha256: sha('a'), bytes: 600, lastAt: 3 },
      { sha256: sha('b'), bytes: 400, lastAt: 2 },
    ]),
    delivered: () => ({ fromPeers: 9_000, fromAppliance: 1_500 }),
    applianceUploaded: () => 1_200,
    devices: () => 10,
    bundles: async () => 2,
    ...over,
  })

  it('renders every metric with its type and value, plus Node process metrics', async () => {
    const { render } = createMetrics(sources())
    const { contentType, body } = await render()
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/)
    const { types, samples } = parseExposition(body)
    const expected: Array<[string, string, number]> = [
      ['patchswarm_wan_bytes_total', 'counter', 1_300],
      ['patchswarm_wan_index_bytes_total', 'counter', 300],
      ['patchswarm_wan_bytes_today', 'gauge', 200],
      ['patchswarm_delivered_bytes_total', 'counter', 10_500],
      ['patchswarm_delivered_from_peers_bytes_total', 'counter', 9_000],
      ['patchswarm_appliance_upload_bytes_total', 'counter', 1_200],
      ['patchswarm_saved_wan_bytes_total', 'counter', 9_500],
      ['patchswarm_devices', 'gauge', 10],
      ['patchswarm_bundles', 'gauge', 2],
    ]
    for (const [name, type, v] of expected) {
      expect(types.get(name), name).toBe(type)
      expect(value(samples, name), name).toBe(v)
    }
    expect(types.get('patchswarm_wan_artifact_bytes_total')).toBe('counter')
    expect(value(samples, 'patchswarm_wan_artifact_bytes_total', { sha256: sha('a') })).toBe(600)
    expect(value(samples, 'patchswarm_wan_artifact_bytes_total', { sha256: sha('b') })).toBe(400)
    expect(types.get('process_cpu_user_seconds_total')).toBe('counter')
    expect(types.get('nodejs_heap_size_used_bytes')).toBe('gauge')
  })

  it('values are read at scrape time, once per scrape', async () => {
    let devices = 1
    let deliveredCalls = 0
    const { render } = createMetrics(
      sources({
        devices: () => devices,
        delivered: async () => {
          deliveredCalls++
          return { fromPeers: 1, fromAppliance: 1 }
        },
      }),
      { processMetrics: false },
    )
    expect(value(parseExposition((await render()).body).samples, 'patchswarm_devices')).toBe(1)
    expect(deliveredCalls).toBe(1) // shared by the three metrics that use it
    devices = 5
    expect(value(parseExposition((await render()).body).samples, 'patchswarm_devices')).toBe(5)
    expect(deliveredCalls).toBe(2)
  })

  it('saved bytes never go negative (more came over the WAN than agents received)', async () => {
    const { render } = createMetrics(
      sources({
        wan: fakeWan({ totalBytes: 5_000, artifactBytes: 5_000 }),
        delivered: () => ({ fromPeers: 0, fromAppliance: 1_000 }),
      }),
      { processMetrics: false },
    )
    expect(value(parseExposition((await render()).body).samples, 'patchswarm_saved_wan_bytes_total')).toBe(0)
  })

  it('caps the per-artifact series at the most recently active artifacts', async () => {
    const artifacts = ['a', 'b', 'c'].map((c, i) => ({ sha256: sha(c), bytes: 1, lastAt: 10 - i }))
    const { render } = createMetrics(sources({ wan: fakeWan({}, artifacts) }), {
      maxArtifactSeries: 2,
      processMetrics: false,
    })
    const { samples } = parseExposition((await render()).body)
    const series = samples.filter((s) => s.name === 'patchswarm_wan_artifact_bytes_total').map((s) => s.labels.sha256)
    expect(series).toEqual([sha('a'), sha('b')])
  })

  it('two appliances in one process share no metrics, and the global registry stays empty', async () => {
    const one = createMetrics(sources({ devices: () => 1 }))
    const two = createMetrics(sources({ devices: () => 2 }))
    expect(one.registry).not.toBe(two.registry)
    expect(value(parseExposition((await one.render()).body).samples, 'patchswarm_devices')).toBe(1)
    expect(value(parseExposition((await two.render()).body).samples, 'patchswarm_devices')).toBe(2)
    expect(await globalRegistry.getMetricsAsJSON()).toEqual([])
  })

  it('a failing source fails the scrape', async () => {
    const { render } = createMetrics(
      sources({
        bundles: () => Promise.reject(new Error('db closed')),
      }),
      { processMetrics: false },
    )
    await expect(render()).rejects.toThrow('db closed')
  })
})

describe('delivered bytes helpers', () => {
  const report = (transfers: Array<[number, number]>): Pick<DeviceRecord, 'report'> => ({
    report: {
      agentVersion: '0.1.0',
      hostname: 'pc',
      bundles: transfers.map(([fromPeers, fromAppliance], i) => ({
        bundleId: String(i).repeat(64),
        state: 'installed',
        chunksHave: 1,
        chunksTotal: 1,
        transfer: { bytesFromPeers: fromPeers, bytesFromAppliance: fromAppliance, bytesServed: 7 },
      })),
    },
  })

  it('sums the transfer counters of every device report; devices without a report add nothing', async () => {
    const devices = [
      report([[100, 10]]),
      report([]),
      {},
      report([
        [5, 1],
        [0, 1000],
      ]),
    ]
    expect(sumDelivered(devices)).toEqual({ fromPeers: 105, fromAppliance: 1011 })
    const fromRegistry = deliveredFromDevices({ list: async () => devices as DeviceRecord[] })
    expect(await fromRegistry()).toEqual({ fromPeers: 105, fromAppliance: 1011 })
  })

  it('sums what the appliance uploaded for the bundles in its catalog', async () => {
    const uploaded = applianceUploadedFromSwarm({
      catalog: { list: async () => [{ bundleId: 'x' }, { bundleId: 'y' }] as never },
      swarm: { stats: (id) => ({ applianceBytesServed: id === 'x' ? 3 : 4 }) },
    })
    expect(await uploaded()).toBe(7)
  })
})
