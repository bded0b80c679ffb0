import { createHash } from 'node:crypto'
import { TrustError, ValidationError } from '../shared/errors.ts'
import {
  ASSIGNMENT_TYPE,
  type Assignment,
  MAX_ASSIGNMENT_BYTES,
  validateAssignment,
} from '../shared/metadata/assignment-schema.ts'
import { checkNotOlder, signingBytes, verifyEnvelope } from '../shared/metadata/envelope.ts'
import {
  MANIFEST_TYPE,
  MAX_MANIFEST_BYTES,
  type Manifest,
  validateManifest,
} from '../shared/metadata/manifest-schema.ts'
import { MAX_MEMBERS_BYTES, MEMBERS_TYPE, type Members, validateMembers } from '../shared/metadata/members-schema.ts'
import type { StateDb } from '../shared/store/state-db.ts'

/** Signed documents arrive parsed; their encoded size still has a limit (endless data). */
function limitSize(doc: unknown, max: number, what: string): void {
  const size = Buffer.byteLength(JSON.stringify(doc) ?? '')
  if (size > max) throw new ValidationError('PSW_ERR_TOO_LARGE', `${what} is ${size} bytes, limit ${max}`)
}

interface Seen {
  version: number
  digest: string
}

/**
 * The agent's trust decisions about signed metadata, fail closed: a document must verify
 * against the pinned root, be fresh, be addressed to this device, and not be older than
 * anything of its kind this agent has accepted before (remembered durably).
 */
export class MetadataGuard {
  readonly #db: StateDb
  readonly #rootPem: string
  readonly #peerId: string
  readonly #now: () => number

  constructor(deps: { db: StateDb; rootPem: string; peerId: string; now: () => number }) {
    this.#db = deps.db
    this.#rootPem = deps.rootPem
    this.#peerId = deps.peerId
    this.#now = deps.now
  }

  async acceptAssignment(envelope: unknown): Promise<Assignment> {
    limitSize(envelope, MAX_ASSIGNMENT_BYTES, 'assignment')
    const { value } = verifyEnvelope(envelope, {
      type: ASSIGNMENT_TYPE,
      rootPem: this.#rootPem,
      now: this.#now(),
      validate: validateAssignment,
    })
    if (value.device !== this.#peerId) {
      throw new TrustError('PSW_ERR_ASSIGNMENT_INVALID', `assignment is for ${value.device}, not this device`)
    }
    await this.#remember('seen:assignment', value, 'assignment')
    return value
  }

  async acceptManifest(envelope: unknown, expected: { bundleId: string; version: number }): Promise<Manifest> {
    limitSize(envelope, MAX_MANIFEST_BYTES, 'manifest')
    const { value } = verifyEnvelope(envelope, {
      type: MANIFEST_TYPE,
      rootPem: this.#rootPem,
      now: this.#now(),
      validate: validateManifest,
    })
    if (value.bundleId !== expected.bundleId || value.version !== expected.version) {
      // Mix-and-match: the assignment pins the exact manifest it means.
      throw new TrustError(
        'PSW_ERR_METADATA_MISMATCH',
        `manifest ${value.bundleId.slice(0, 12)} v${value.version} is not the v${expected.version} the assignment names`,
      )
    }
    await this.#remember(`seen:manifest:${value.bundleId}`, value, 'manifest')
    return value
  }

  /** The signed list of enrolled peers, fed to the connection gater (fail closed, no rollback). */
  async acceptMembers(envelope: unknown): Promise<Members> {
    limitSize(envelope, MAX_MEMBERS_BYTES, 'member list')
    const { value } = verifyEnvelope(envelope, {
      type: MEMBERS_TYPE,
      rootPem: this.#rootPem,
      now: this.#now(),
      validate: validateMembers,
    })
    await this.#remember('seen:members', value, 'member list')
    return value
  }

  async #remember(key: string, doc: { version: number }, what: string): Promise<void> {
    const incoming = { version: doc.version, digest: createHash('sha256').update(signingBytes(doc)).digest('hex') }
    checkNotOlder(await this.#db.get<Seen>(key), incoming, what)
    await this.#db.put(key, incoming)
  }
}
