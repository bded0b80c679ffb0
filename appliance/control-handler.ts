import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { StateError } from '../shared/errors.ts'
import type { ControlRequest } from '../shared/protocol/control-protocol.ts'
import type { Assignments } from './assignments.ts'
import type { Catalog } from './catalog.ts'
import type { DeviceRegistry } from './devices.ts'
import type { MemberList } from './members.ts'
import type { ApplianceSwarm } from './swarm.ts'

export interface ControlHandlerDeps {
  assignments: Assignments
  catalog: Catalog
  devices: DeviceRegistry
  members: MemberList
  swarm: ApplianceSwarm
  clock: Clock
  log: Logger
  /** A device's report was stored (the rollout service looks at it soon). */
  onReport?: (peerId: string) => void
}

/**
 * Answers an enrolled agent's control requests. The PeerId comes from the Noise-authenticated
 * connection, never from the message, so an agent can only read and report for itself.
 */
export function createControlHandler(deps: ControlHandlerDeps) {
  return (peerId: string) =>
    async (request: ControlRequest): Promise<unknown> => {
      switch (request.op) {
        case 'get-assignment':
          return (await deps.assignments.get(peerId)) ?? null
        case 'get-manifest': {
          const assignment = await deps.assignments.get(peerId)
          // Need to know: a device only gets manifests of bundles assigned to it.
          if (!assignment?.signed.bundles.some((b) => b.bundleId === request.bundleId)) {
            throw new StateError('PSW_ERR_NOT_FOUND', `bundle ${request.bundleId} is not assigned to this device`)
          }
          const manifest = await deps.catalog.manifest(request.bundleId)
          if (!manifest) throw new StateError('PSW_ERR_NOT_FOUND', `no manifest for bundle ${request.bundleId}`)
          return manifest
        }
        case 'get-members':
          return deps.members.get()
        case 'announce':
          return deps.swarm.announce(peerId, request)
        case 'report': {
          await deps.devices.recordReport(peerId, request.report, deps.clock.now())
          deps.onReport?.(peerId)
          for (const b of request.report.bundles) {
            if (b.error)
              deps.log.warn({ peer: peerId, bundleId: b.bundleId, error: b.error }, 'agent reported a failure')
          }
          if (request.report.refused) {
            deps.log.warn({ peer: peerId, refused: request.report.refused }, 'agent refused signed metadata')
          }
          return { accepted: true }
        }
        case 'inventory': {
          // Stored only for the calling device: the PeerId is the connection's.
          if (!(await deps.devices.recordInventory(peerId, request.inventory, deps.clock.now()))) {
            throw new StateError('PSW_ERR_NOT_ENROLLED', 'no device record for this peer')
          }
          const { inventory } = request
          if (inventory.errors?.length)
            deps.log.info({ peer: peerId, errors: inventory.errors }, 'agent inventory is incomplete')
          return { accepted: true, digest: inventory.digest }
        }
      }
    }
}
