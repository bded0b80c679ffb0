import type { Clock } from '../shared/clock.ts'
import { type SignedEnvelope, type Signer, signEnvelope } from '../shared/metadata/envelope.ts'
import { MEMBERS_SPEC_VERSION, MEMBERS_TYPE, type Members, validateMembers } from '../shared/metadata/members-schema.ts'
import { Mutex } from '../shared/store/mutex.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import { isPastRefreshPoint } from './assignments.ts'
import type { DeviceRegistry } from './devices.ts'

/** A member list lives a day; agents fetch a fresh one every sync cycle. */
const MEMBERS_TTL_MS = 24 * 3600_000

/**
 * The signed list of enrolled PeerIds that agents feed their connection gaters with. It is
 * signed again when the set of devices changes or a third of its lifetime is left, with a
 * new version from the metadata counter, so agents refuse an older list (rollback).
 */
export class MemberList {
  readonly #deps: { db: StateDb; devices: DeviceRegistry; signer: Signer; clock: Clock }
  readonly #mutex = new Mutex()
  #current: SignedEnvelope<Members> | undefined

  constructor(deps: { db: StateDb; devices: DeviceRegistry; signer: Signer; clock: Clock }) {
    this.#deps = deps
  }

  async get(): Promise<SignedEnvelope<Members>> {
    return this.#mutex.runExclusive(async () => {
      const { devices, db, signer, clock } = this.#deps
      const peers = devices.members().sort()
      const now = clock.now()
      const current = this.#current ?? (await db.get<SignedEnvelope<Members>>('members'))
      if (current && !isPastRefreshPoint(current.signed, now) && current.signed.peers.join() === peers.join()) {
        this.#current = current
        return current
      }
      const members = validateMembers({
        type: MEMBERS_TYPE,
        specVersion: MEMBERS_SPEC_VERSION,
        version: await db.nextCounter('metadata-version'),
        created: new Date(now).toISOString(),
        expires: new Date(now + MEMBERS_TTL_MS).toISOString(),
        peers,
      } satisfies Members)
      const envelope = signEnvelope(members, signer)
      await db.put('members', envelope)
      this.#current = envelope
      return envelope
    })
  }
}
