import { createHash } from 'node:crypto'
import type { RingSpecT, RolloutSpecT } from './rollout-types.ts'

/** A device as the rollout engine sees it: its PeerId and the groups it belongs to now. */
export interface DeviceInfo {
  peerId: string
  groups: readonly string[]
}

/** Whether a device is in the rollout's target. */
export function inTarget(spec: Pick<RolloutSpecT, 'target'>, device: DeviceInfo): boolean {
  return spec.target === 'all' || device.groups.some((g) => spec.target.includes(g))
}

/**
 * A stable order of devices for one rollout: by SHA-256 of rollout id and PeerId. Percentage
 * and count rings take devices in this order, so the pilot set is random across the site but
 * the same every time it is computed (and differs between rollouts).
 */
export function rolloutOrder(rolloutId: string, peerIds: Iterable<string>): string[] {
  const key = (p: string) => createHash('sha256').update(`${rolloutId}\0${p}`).digest('hex')
  return [...peerIds]
    .map((p) => ({ p, k: key(p) }))
    .sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0))
    .map((x) => x.p)
}

/**
 * Splits the target devices into rings, in ring order: a group ring takes the members of its
 * groups, a percentage ring that share of the whole target (rounded up), a count ring that
 * many, a rest ring everything left; each ring only from devices no earlier ring took.
 * Returns PeerId → ring index; devices no ring takes are absent.
 */
export function assignRings(spec: RolloutSpecT, devices: readonly DeviceInfo[]): Map<string, number> {
  const target = devices.filter((d) => inTarget(spec, d))
  const byId = new Map(target.map((d) => [d.peerId, d]))
  const order = rolloutOrder(spec.id, byId.keys())
  const out = new Map<string, number>()
  spec.rings.forEach((ring, index) => {
    const free = order.filter((p) => !out.has(p))
    for (const p of take(ring, free, byId, target.length)) out.set(p, index)
  })
  return out
}

function take(ring: RingSpecT, free: string[], byId: Map<string, DeviceInfo>, targetSize: number): string[] {
  const s = ring.selector
  if ('groups' in s) return free.filter((p) => byId.get(p)!.groups.some((g) => s.groups.includes(g)))
  if ('percent' in s) return free.slice(0, Math.ceil((s.percent / 100) * targetSize))
  if ('count' in s) return free.slice(0, s.count)
  return free
}

/**
 * The ring a device that joined the target after the rollout started belongs to: the first
 * group ring whose groups it is in, else the rest ring; undefined when neither exists
 * (percentage and count rings were sized when the rollout started and stay as they are).
 */
export function ringForLateJoiner(spec: RolloutSpecT, device: DeviceInfo): number | undefined {
  const byGroup = spec.rings.findIndex(
    (r) => 'groups' in r.selector && device.groups.some((g) => (r.selector as { groups: string[] }).groups.includes(g)),
  )
  if (byGroup >= 0) return byGroup
  const rest = spec.rings.findIndex((r) => 'rest' in r.selector)
  return rest >= 0 ? rest : undefined
}
