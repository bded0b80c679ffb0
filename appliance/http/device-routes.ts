import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { StateError } from '../../shared/errors.ts'
import { PeerIdString } from '../../shared/metadata/common-schema.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { AuditEntry } from '../audit/audit-record.ts'
import { actorOf, requireRole } from '../auth/principal.ts'
import {
  DEFAULT_TIER,
  type DeviceRecord,
  type DeviceRegistry,
  type DeviceTier,
  TagSchema,
  TierSchema,
} from '../devices.ts'
import {
  type GroupCreate,
  GroupCreateSchema,
  GroupIdSchema,
  type GroupStore,
  type GroupUpdate,
  GroupUpdateSchema,
  members,
} from '../policy/groups.ts'

/** What the device and group routes use of the core. */
export interface DeviceRoutesDeps {
  devices: DeviceRegistry
  groups: GroupStore
  /** Tag, tier and group changes are audited (before/after) when given. */
  audit?: AuditLog
  /** A tag, tier or group changed: policy that depends on membership looks again (windows). */
  onChange?: () => void
}

const Limit = Type.String({ pattern: '^[0-9]{1,5}$' })
export const DeviceListQuerySchema = Type.Object(
  {
    /** Case-insensitive substring of the hostname (enrolled or reported) or PeerId, or of a tag. */
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    group: Type.Optional(GroupIdSchema),
    tier: Type.Optional(TierSchema),
    limit: Type.Optional(Limit),
  },
  { additionalProperties: false },
)
export const PeerParamsSchema = Type.Object({ peerId: PeerIdString }, { additionalProperties: false })
export const GroupParamsSchema = Type.Object({ id: GroupIdSchema }, { additionalProperties: false })
export const TagsBodySchema = Type.Object(
  { tags: Type.Array(TagSchema, { maxItems: 32 }) },
  { additionalProperties: false },
)
export const TierBodySchema = Type.Object({ tier: TierSchema }, { additionalProperties: false })
const NoQuerySchema = Type.Object({}, { additionalProperties: false })
const MembersQuerySchema = Type.Object({ limit: Type.Optional(Limit) }, { additionalProperties: false })

/** A device as lists show it: no certificate, no last status report. */
export function deviceView(d: DeviceRecord) {
  return {
    peerId: d.peerId,
    hostname: d.hostname,
    enrolledAt: d.enrolledAt,
    ...(d.lastSeen === undefined ? {} : { lastSeen: d.lastSeen }),
    tags: d.tags ?? [],
    tier: d.tier ?? DEFAULT_TIER,
    ...(d.inventory === undefined ? {} : { inventory: d.inventory }),
  }
}

function searchMatches(d: DeviceRecord, q: string): boolean {
  const needle = q.toLowerCase()
  const hay = [d.hostname, d.peerId, d.inventory?.hostname ?? '', ...(d.tags ?? [])]
  return hay.some((h) => h.toLowerCase().includes(needle))
}

const byHostname = (a: DeviceRecord, b: DeviceRecord) =>
  a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : a.peerId < b.peerId ? -1 : 1

/**
 * Devices (search, detail with the latest inventory, tags, tier) and groups (CRUD, members).
 * Reads: viewer; tags, tier and group changes: operator.
 */
export function registerDeviceRoutes(app: FastifyInstance, deps: DeviceRoutesDeps): void {
  const { devices, groups } = deps
  const viewer = requireRole('viewer')
  const operator = requireRole('operator')
  /** After a change is durable: its audit record, then the membership-dependent policy. */
  const changed = async (request: FastifyRequest, entry: Omit<AuditEntry, 'actor'>) => {
    await deps.audit?.append({ actor: actorOf(request), ...entry })
    deps.onChange?.()
  }

  const groupOr404 = async (id: string) => {
    const g = await groups.get(id)
    if (!g) throw new StateError('PSW_ERR_NOT_FOUND', `no group ${id}`)
    return g
  }

  app.get<{ Querystring: { q?: string; group?: string; tier?: DeviceTier; limit?: string } }>(
    '/api/v1/devices',
    { onRequest: viewer, schema: { querystring: DeviceListQuerySchema } },
    async (request) => {
      const { q, group, tier, limit } = request.query
      let list = await devices.list()
      if (group) list = members(await groupOr404(group), list)
      if (tier) list = list.filter((d) => (d.tier ?? DEFAULT_TIER) === tier)
      if (q) list = list.filter((d) => searchMatches(d, q))
      list.sort(byHostname)
      const max = Math.min(Number(limit ?? 1000), 10_000)
      return { total: list.length, devices: list.slice(0, max).map(deviceView) }
    },
  )

  app.get<{ Params: { peerId: string } }>(
    '/api/v1/devices/:peerId',
    { onRequest: viewer, schema: { params: PeerParamsSchema } },
    async (request) => {
      const { peerId } = request.params
      const d = await devices.get(peerId)
      if (!d) throw new StateError('PSW_ERR_NOT_FOUND', `no device ${peerId}`)
      const stored = await devices.getInventory(peerId)
      return {
        device: { ...deviceView(d), ...(d.report === undefined ? {} : { report: d.report }) },
        inventory: stored ?? null,
      }
    },
  )

  app.put<{ Params: { peerId: string }; Body: { tags: string[] } }>(
    '/api/v1/devices/:peerId/tags',
    { onRequest: operator, schema: { params: PeerParamsSchema, body: TagsBodySchema } },
    async (request) => {
      const before = (await devices.get(request.params.peerId))?.tags ?? []
      const d = await devices.setTags(request.params.peerId, request.body.tags)
      await changed(request, {
        action: 'device.tags',
        target: { type: 'device', id: d.peerId },
        before: { tags: before },
        after: { tags: d.tags ?? [] },
      })
      return deviceView(d)
    },
  )

  app.put<{ Params: { peerId: string }; Body: { tier: DeviceTier } }>(
    '/api/v1/devices/:peerId/tier',
    { onRequest: operator, schema: { params: PeerParamsSchema, body: TierBodySchema } },
    async (request) => {
      const before = (await devices.get(request.params.peerId))?.tier
      const d = await devices.setTier(request.params.peerId, request.body.tier)
      await changed(request, {
        action: 'device.tier',
        target: { type: 'device', id: d.peerId },
        ...(before === undefined ? {} : { before: { tier: before } }),
        after: { tier: d.tier },
      })
      return deviceView(d)
    },
  )

  app.get('/api/v1/groups', { onRequest: viewer, schema: { querystring: NoQuerySchema } }, async () => {
    const all = await devices.list()
    const list = await groups.list()
    return { groups: list.map((g) => ({ ...g, memberCount: members(g, all).length })) }
  })

  app.post<{ Body: GroupCreate }>(
    '/api/v1/groups',
    { onRequest: operator, schema: { body: GroupCreateSchema } },
    async (request, reply) => {
      const group = await groups.create(request.body)
      await changed(request, { action: 'group.create', target: { type: 'group', id: group.id }, after: group })
      reply.code(201)
      return group
    },
  )

  app.get<{ Params: { id: string } }>(
    '/api/v1/groups/:id',
    { onRequest: viewer, schema: { params: GroupParamsSchema } },
    async (request) => groupOr404(request.params.id),
  )

  app.put<{ Params: { id: string }; Body: GroupUpdate }>(
    '/api/v1/groups/:id',
    { onRequest: operator, schema: { params: GroupParamsSchema, body: GroupUpdateSchema } },
    async (request) => {
      const before = await groups.get(request.params.id)
      const group = await groups.update(request.params.id, request.body)
      await changed(request, {
        action: 'group.update',
        target: { type: 'group', id: group.id },
        ...(before ? { before } : {}),
        after: group,
      })
      return group
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/api/v1/groups/:id',
    { onRequest: operator, schema: { params: GroupParamsSchema } },
    async (request, reply) => {
      const before = await groups.get(request.params.id)
      await groups.delete(request.params.id)
      await changed(request, {
        action: 'group.delete',
        target: { type: 'group', id: request.params.id },
        ...(before ? { before } : {}),
      })
      return reply.code(204).send()
    },
  )

  app.get<{ Params: { id: string }; Querystring: { limit?: string } }>(
    '/api/v1/groups/:id/members',
    { onRequest: viewer, schema: { params: GroupParamsSchema, querystring: MembersQuerySchema } },
    async (request) => {
      const group = await groupOr404(request.params.id)
      const list = members(group, await devices.list()).sort(byHostname)
      const max = Math.min(Number(request.query.limit ?? 1000), 10_000)
      return { group: group.id, total: list.length, devices: list.slice(0, max).map(deviceView) }
    },
  )
}
