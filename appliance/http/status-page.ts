import type { BundleRecord } from '../catalog.ts'
import type { DeviceRecord } from '../devices.ts'
import type { BundleSwarmStats } from '../swarm.ts'

/** What `GET /api/v1/status` answers (the CLI's `appliance status` and the Swarm page read it). */
export interface StatusView {
  siteName: string
  peerId: string
  multiaddrs: string[]
  rootFingerprint: string
  bundles: BundleRecord[]
  devices: DeviceRecord[]
  /** Per bundle: the tracker's view and the appliance's uploads (while it runs). */
  swarm?: BundleSwarmStats[]
}
