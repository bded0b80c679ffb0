import type { Catalog } from '../catalog.ts'
import type { DeviceRecord, DeviceRegistry } from '../devices.ts'
import type { BundleSwarmStats } from '../swarm.ts'

/** Bundle bytes agents received, by where they came from. */
export interface DeliveredBytes {
  fromPeers: number
  fromAppliance: number
}

/**
 * Sums the transfer counters of the devices' latest reports (as the status page does). A
 * report lists the bundles of the device's current assignment, so the sum can drop when a
 * bundle leaves an assignment or a device is removed.
 */
export function sumDelivered(devices: Iterable<Pick<DeviceRecord, 'report'>>): DeliveredBytes {
  let fromPeers = 0
  let fromAppliance = 0
  for (const d of devices) {
    for (const b of d.report?.bundles ?? []) {
      fromPeers += b.transfer.bytesFromPeers
      fromAppliance += b.transfer.bytesFromAppliance
    }
  }
  return { fromPeers, fromAppliance }
}

/** `delivered` for `createMetrics`: reads the device registry at scrape time. */
export function deliveredFromDevices(devices: Pick<DeviceRegistry, 'list'>): () => Promise<DeliveredBytes> {
  return async () => sumDelivered(await devices.list())
}

/**
 * `applianceUploaded` for `createMetrics`: what the appliance uploaded for the bundles in its
 * catalog (the sum over `ApplianceSwarm.stats()`, as `GET /api/v1/status` shows it).
 */
export function applianceUploadedFromSwarm(deps: {
  catalog: Pick<Catalog, 'list'>
  swarm: { stats(bundleId: string): Pick<BundleSwarmStats, 'applianceBytesServed'> }
}): () => Promise<number> {
  return async () => {
    let sum = 0
    for (const b of await deps.catalog.list()) sum += deps.swarm.stats(b.bundleId).applianceBytesServed
    return sum
  }
}
