/**
 * Device groups: a named filter over devices (tags, tier, OS, hostname, explicit PeerIds).
 * Membership is computed, never stored, so a device that gets a tag or reports a new OS
 * joins or leaves its groups at once. `members` is pure; `GroupStore` persists the
 * definitions under `group:<id>`.
 */
import { type Static, Type } from '@sinclair/typebox'
import type { Clock } from '../../shared/clock.ts'
import { StateError, ValidationError } from '../../shared/errors.ts'
import { MAX_SPREAD_SECONDS } from '../../shared/metadata/assignment-schema.ts'
import { PeerIdString } from '../../shared/metadata/common-schema.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import {
  MAX_WINDOWS_PER_GROUP,
  MaintenanceWindowSchema,
  parseMaintenanceWindow,
} from '../../shared/policy/window-schema.ts'
import { Mutex } from '../../shared/store/mutex.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import { DEFAULT_TIER, type DeviceTier, TagSchema, TierSchema } from '../devices.ts'

export const MAX_GROUPS = 500
export const MAX_GROUP_PEER_IDS = 2000

export const GroupIdSchema = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9][a-z0-9_-]{0,63}$' })
/** `*` any run of characters, `?` one character; case-insensitive. */
const GlobSchema = (max: number) => Type.String({ minLength: 1, maxLength: max, pattern: '^[A-Za-z0-9.*?_-]+$' })

export const GroupMatchSchema = Type.Object(
  {
    tags: Type.Optional(
      Type.Object(
        {
          /** The device has every one of these tags. */
          all: Type.Optional(Type.Array(TagSchema, { minItems: 1, maxItems: 32 })),
          /** The device has at least one of these tags. */
          any: Type.Optional(Type.Array(TagSchema, { minItems: 1, maxItems: 32 })),
        },
        { additionalProperties: false },
      ),
    ),
    tiers: Type.Optional(Type.Array(TierSchema, { minItems: 1, maxItems: 4 })),
    /**
     * Globs over the OS names of the last inventory: the platform (`linux`, `windows`), the
     * os-release ID (`debian`) and ID-VERSION_ID (`ubuntu-24.04`, `windows-10.0.22631`).
     */
    os: Type.Optional(Type.Array(GlobSchema(64), { minItems: 1, maxItems: 16 })),
    /** Glob over the enrolled hostname and the one the inventory reports. */
    hostnamePattern: Type.Optional(GlobSchema(255)),
    peerIds: Type.Optional(Type.Array(PeerIdString, { minItems: 1, maxItems: MAX_GROUP_PEER_IDS })),
  },
  { additionalProperties: false },
)
export type GroupMatch = Static<typeof GroupMatchSchema>

/** The body of PUT /groups/:id. */
export const GroupUpdateSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    match: GroupMatchSchema,
    /** Maintenance windows of the group's devices (a device in several groups: all of them). */
    windows: Type.Optional(Type.Array(MaintenanceWindowSchema, { minItems: 1, maxItems: MAX_WINDOWS_PER_GROUP })),
    /** Install start spread after a window opens, per device (seconds). */
    spreadSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_SPREAD_SECONDS })),
  },
  { additionalProperties: false },
)
export type GroupUpdate = Static<typeof GroupUpdateSchema>

/** The body of POST /groups. */
export const GroupCreateSchema = Type.Object(
  {
    id: GroupIdSchema,
    name: Type.String({ minLength: 1, maxLength: 100 }),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    match: GroupMatchSchema,
    /** Maintenance windows of the group's devices (a device in several groups: all of them). */
    windows: Type.Optional(Type.Array(MaintenanceWindowSchema, { minItems: 1, maxItems: MAX_WINDOWS_PER_GROUP })),
    /** Install start spread after a window opens, per device (seconds). */
    spreadSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_SPREAD_SECONDS })),
  },
  { additionalProperties: false },
)
export type GroupCreate = Static<typeof GroupCreateSchema>

export interface Group extends GroupCreate {
  createdAt: string
  updatedAt: string
}

/** What membership looks at of a device (a DeviceRecord has all of it). */
export interface MatchableDevice {
  peerId: string
  hostname: string
  tags?: readonly string[]
  tier?: DeviceTier
  inventory?: InventoryFacts
}

/** What membership looks at of an inventory. */
export interface InventoryFacts {
  hostname?: string
  os?: { platform: string; id?: string; versionId?: string }
}

/**
 * Glob match, case-insensitive: `*` any run (also empty), `?` one character. Linear
 * backtracking over the last star only, so no pattern can make it exponential.
 */
export function globMatch(pattern: string, text: string): boolean {
  const p = pattern.toLowerCase()
  const t = text.toLowerCase()
  let pi = 0
  let ti = 0
  let star = -1
  let mark = 0
  while (ti < t.length) {
    if (pi < p.length && (p[pi] === '?' || p[pi] === t[ti])) {
      pi++
      ti++
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++
      mark = ti
    } else if (star >= 0) {
      pi = star + 1
      ti = ++mark
    } else return false
  }
  while (pi < p.length && p[pi] === '*') pi++
  return pi === p.length
}

/** The names an OS can be matched by (see GroupMatchSchema.os). */
export function osNames(os: NonNullable<InventoryFacts['os']>): string[] {
  const names = [os.platform === 'win32' ? 'windows' : os.platform]
  if (os.id) {
    names.push(os.id)
    if (os.versionId) names.push(`${os.id}-${os.versionId}`)
  }
  return [...new Set(names)]
}

/** Whether one device matches: every criterion given must hold; no criterion matches all. */
export function matches(match: GroupMatch, device: MatchableDevice, facts?: InventoryFacts): boolean {
  const tags = new Set(device.tags ?? [])
  if (match.tags?.all && !match.tags.all.every((t) => tags.has(t))) return false
  if (match.tags?.any && !match.tags.any.some((t) => tags.has(t))) return false
  if (match.tiers && !match.tiers.includes(device.tier ?? DEFAULT_TIER)) return false
  if (match.peerIds && !match.peerIds.includes(device.peerId)) return false
  const inventory = facts ?? device.inventory
  if (match.hostnamePattern) {
    const pattern = match.hostnamePattern
    const names = [device.hostname, inventory?.hostname].filter((h): h is string => !!h)
    if (!names.some((h) => globMatch(pattern, h))) return false
  }
  if (match.os) {
    // No inventory yet: the OS is unknown, so the device is not a member.
    if (!inventory?.os) return false
    const names = osNames(inventory.os)
    if (!match.os.some((g) => names.some((n) => globMatch(g, n)))) return false
  }
  return true
}

/**
 * The devices in `group`, in the order given. `inventories` (by PeerId) overrides the
 * inventory summary on each device record, e.g. for a simulation.
 */
export function members<T extends MatchableDevice>(
  group: Pick<Group, 'match'>,
  devices: Iterable<T>,
  inventories?: ReadonlyMap<string, InventoryFacts>,
): T[] {
  const peerIds = group.match.peerIds ? new Set(group.match.peerIds) : undefined
  const out: T[] = []
  for (const d of devices) {
    if (peerIds && !peerIds.has(d.peerId)) continue
    if (matches(group.match, d, inventories?.get(d.peerId))) out.push(d)
  }
  return out
}

const groupKey = (id: string) => `group:${id}`

/** Tags are stored lower case on devices (normalizeTags), so they are in groups too. */
function normalizeMatch(match: GroupMatch): GroupMatch {
  if (!match.tags) return match
  const lower = (list: string[] | undefined) => (list ? [...new Set(list.map((t) => t.toLowerCase()))] : undefined)
  const all = lower(match.tags.all)
  const any = lower(match.tags.any)
  return { ...match, tags: { ...(all ? { all } : {}), ...(any ? { any } : {}) } }
}
const checkCreate = compileChecker(GroupCreateSchema)
const checkUpdate = compileChecker(GroupUpdateSchema)

/** What the schema cannot say of windows (a known zone, an RRULE or cron that parses); ids unique. */
function checkWindows(windows: GroupUpdate['windows']): void {
  const ids = new Set<string>()
  for (const w of windows ?? []) {
    parseMaintenanceWindow(w, `window ${w.id}`)
    if (ids.has(w.id))
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `two windows have the id ${w.id}`, {
        details: { field: 'id' },
      })
    ids.add(w.id)
  }
}

/** Group definitions in the appliance's state database. Writes are serialised. */
export class GroupStore {
  readonly #db: StateDb
  readonly #clock: Clock
  readonly #lock = new Mutex()

  constructor(deps: { db: StateDb; clock: Clock }) {
    this.#db = deps.db
    this.#clock = deps.clock
  }

  async list(): Promise<Group[]> {
    const out: Group[] = []
    for await (const [, g] of this.#db.iterate<Group>('group:')) out.push(g)
    return out
  }

  async get(id: string): Promise<Group | undefined> {
    return this.#db.get<Group>(groupKey(id))
  }

  /** PSW_ERR_CONFLICT if the id is taken, PSW_ERR_TOO_LARGE beyond MAX_GROUPS. */
  async create(input: GroupCreate): Promise<Group> {
    const valid = checkCreate.check(input, 'group')
    checkWindows(valid.windows)
    return this.#lock.runExclusive(async () => {
      if (await this.get(valid.id)) throw new StateError('PSW_ERR_CONFLICT', `group ${valid.id} exists`)
      let count = 0
      for await (const _ of this.#db.iterate('group:')) count++
      if (count >= MAX_GROUPS) throw new ValidationError('PSW_ERR_TOO_LARGE', `at most ${MAX_GROUPS} groups`)
      const now = new Date(this.#clock.now()).toISOString()
      const group: Group = { ...valid, match: normalizeMatch(valid.match), createdAt: now, updatedAt: now }
      await this.#db.put(groupKey(valid.id), group)
      return group
    })
  }

  /** Replaces name, description, match, windows and spread; PSW_ERR_NOT_FOUND for an unknown id. */
  async update(id: string, input: GroupUpdate): Promise<Group> {
    const valid = checkUpdate.check(input, 'group')
    checkWindows(valid.windows)
    return this.#lock.runExclusive(async () => {
      const old = await this.get(id)
      if (!old) throw new StateError('PSW_ERR_NOT_FOUND', `no group ${id}`)
      const group: Group = {
        id,
        name: valid.name,
        ...(valid.description === undefined ? {} : { description: valid.description }),
        match: normalizeMatch(valid.match),
        // PUT replaces the definition: windows and spread as given (absent: none).
        ...(valid.windows === undefined ? {} : { windows: valid.windows }),
        ...(valid.spreadSeconds === undefined ? {} : { spreadSeconds: valid.spreadSeconds }),
        createdAt: old.createdAt,
        updatedAt: new Date(this.#clock.now()).toISOString(),
      }
      await this.#db.put(groupKey(id), group)
      return group
    })
  }

  async delete(id: string): Promise<void> {
    await this.#lock.runExclusive(async () => {
      if (!(await this.get(id))) throw new StateError('PSW_ERR_NOT_FOUND', `no group ${id}`)
      await this.#db.del(groupKey(id))
    })
  }
}
