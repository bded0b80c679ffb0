import { describe, expect, it } from 'vitest'
import { lowerBoundSeconds, simulate } from './simulator.ts'

const MiB = 1 << 20
const scenarios = {
  'slow-appliance': { applianceUp: 2 * MiB, agentUp: 8 * MiB },
  'slow-agents': { applianceUp: 16 * MiB, agentUp: 2 * MiB },
}

describe('swarm simulator', () => {
  for (const [name, rates] of Object.entries(scenarios)) {
    it(`${name}: 10 agents × 8 chunks all complete, never faster than the bound`, () => {
      const r = simulate({ agents: 10, size: 8 * MiB, chunkSize: MiB, ...rates, seed: 7 })
      expect(r.incomplete).toBe(0)
      expect(r.agent_seconds).toHaveLength(10)
      for (const s of r.agent_seconds) expect(Number.isFinite(s)).toBe(true)
      expect(r.lower_bound_seconds).toBeCloseTo(lowerBoundSeconds({ agents: 10, size: 8 * MiB, ...rates }), 3)
      // Sanity: the Kumar–Ross bound can never be beaten, and every chunk leaves the appliance.
      expect(r.ratio).toBeGreaterThanOrEqual(1)
      expect(r.appliance_upload_ratio).toBeGreaterThanOrEqual(1)
      expect(r.seconds_p50).toBeLessThanOrEqual(r.seconds_max)
      expect(r.peer_bytes_fraction).toBeGreaterThanOrEqual(0)
      expect(r.peer_bytes_fraction).toBeLessThanOrEqual(1)
    })
  }

  it('is deterministic for a seed', () => {
    const a = simulate({ agents: 10, size: 8 * MiB, seed: 3 })
    const b = simulate({ agents: 10, size: 8 * MiB, seed: 3 })
    expect(a.agent_seconds).toEqual(b.agent_seconds)
    expect(a.duplicate_bytes).toBe(b.duplicate_bytes)
  })

  it('with a download cap, is bounded by F / d', () => {
    const r = simulate({ agents: 10, size: 8 * MiB, agentDown: 4 * MiB, applianceUp: 64 * MiB, agentUp: 64 * MiB })
    expect(r.incomplete).toBe(0)
    expect(r.lower_bound_seconds).toBeCloseTo(2, 3)
    expect(r.ratio).toBeGreaterThanOrEqual(1)
  })
})
