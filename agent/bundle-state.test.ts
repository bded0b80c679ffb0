import { describe, expect, it } from 'vitest'
import { type BundleState, reportedState, toBundleReport } from './bundle-state.ts'

const base: BundleState = {
  bundleId: 'a'.repeat(64),
  manifestVersion: 3,
  updatedAt: '2026-11-22T01:00:00.000Z',
  state: 'installed',
  chunksHave: 2,
  chunksTotal: 2,
  transfer: { bytesFromAppliance: 10, bytesFromPeers: 5, bytesServed: 1 },
}

describe('the reported state of a bundle', () => {
  it('leaves the agent’s own bookkeeping out', () => {
    const r = toBundleReport({
      ...base,
      installFailedUnder: 4,
      released: true,
      rebootRequired: true,
      rebootBootId: 'x',
    })
    expect(r).toEqual({
      bundleId: base.bundleId,
      state: 'installed',
      chunksHave: 2,
      chunksTotal: 2,
      transfer: base.transfer,
      rebootRequired: true,
    })
  })

  it('reports the answer to the current action as it is', () => {
    expect(reportedState(base, 'install', 7).state).toBe('installed')
    const done = { ...base, state: 'rolled-back' as const, action: 'rollback' as const, detail: 'not installed here' }
    expect(reportedState(done, 'rollback', 7)).toMatchObject({ state: 'rolled-back', action: 'rollback' })
    const failedNow = { ...base, state: 'failed' as const, installFailedUnder: 7 }
    expect(reportedState(failedNow, 'install', 7).state).toBe('failed')
  })

  it('never lets an install’s failure pass for a rollback’s answer, nor the reverse', () => {
    const installFailed = { ...base, state: 'failed' as const, installFailedUnder: 6 }
    expect(reportedState(installFailed, 'rollback', 7)).toEqual({
      bundleId: base.bundleId,
      state: 'pending',
      chunksHave: 2,
      chunksTotal: 2,
      transfer: base.transfer,
      action: 'rollback',
    })
    const healthRolledBack = { ...base, state: 'rolled-back' as const, installFailedUnder: 6 }
    expect(reportedState(healthRolledBack, 'rollback', 7)).toMatchObject({ state: 'pending', action: 'rollback' })
    const siteRolledBack = { ...base, state: 'rolled-back' as const, action: 'rollback' as const }
    expect(reportedState(siteRolledBack, 'install', 8)).toMatchObject({ state: 'pending' })
    expect(reportedState(siteRolledBack, 'install', 8).action).toBeUndefined()
  })

  it('reports an installed bundle awaiting its rollback as installed, with the action', () => {
    expect(reportedState(base, 'rollback', 7)).toMatchObject({ state: 'installed', action: 'rollback' })
  })

  it('reports a failure under an older assignment as pending: this one retries it', () => {
    const older = { ...base, state: 'failed' as const, installFailedUnder: 6, error: { code: 'X', message: 'y' } }
    expect(reportedState(older, 'install', 7)).toMatchObject({ state: 'pending' })
    // A download or manifest failure (no installFailedUnder) is current: retried every cycle.
    const download = { ...base, state: 'failed' as const, error: { code: 'PSW_ERR_PEER_TIMEOUT', message: 'slow' } }
    expect(reportedState(download, 'install', 7).state).toBe('failed')
  })
})
