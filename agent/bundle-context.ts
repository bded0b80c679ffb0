import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import type { AssignedBundleT } from '../shared/metadata/assignment-schema.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import type { BundleState, BundleStates } from './bundle-state.ts'
import type { InstallRouter } from './install-support.ts'
import type { AgentSwarm } from './swarm/agent-swarm.ts'

/**
 * What the per-bundle handlers (install-handler.ts, rollback-handler.ts) get from the agent:
 * its stores and installers, and the few things of the running cycle they read or set.
 */
export interface BundleContext {
  states: BundleStates
  installs: InstallRouter
  clock: Clock
  log: Logger
  peerId: string
  downloadsDir: string
  /** Download (and seed) but never install (benchmarks). */
  downloadOnly: boolean
  /** Aborted when the agent stops. */
  signal: AbortSignal
  /** The started swarm (undefined before start). */
  swarm(): AgentSwarm | undefined
  /** The version of the assignment being carried out. */
  assignmentVersion(): number | undefined
  /** Records a refused manifest for the next report. */
  refuse(refusal: { code: string; message: string }): void
  report(): Promise<void>
  bootId(): Promise<string | undefined>
  fetchManifest(
    entry: AssignedBundleT,
    refusedState: Omit<BundleState, 'updatedAt' | 'state' | 'chunksHave' | 'chunksTotal'>,
  ): Promise<Manifest | undefined>
  dropDownload(bundleId: string): Promise<void>
  installedAt(manifest: Manifest): Promise<'here' | 'elsewhere' | undefined>
  targetFor(manifest: Manifest): string
  logWaiting(bundleId: string, what: 'install' | 'rollback', reason: string, nextAt: number | undefined): void
  clearWaiting(bundleId: string): void
}
