import { createHash, randomBytes } from 'node:crypto'
import { type Static, Type } from '@sinclair/typebox'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { EnrollmentError, StateError, ValidationError } from '../shared/errors.ts'
import { PeerIdString } from '../shared/metadata/common-schema.ts'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import { issueAgentCert, verifyCsr } from '../shared/pki/index.ts'
import { Mutex } from '../shared/store/mutex.ts'
import type { StateDb } from '../shared/store/state-db.ts'
import type { DeviceRegistry } from './devices.ts'

export const EnrollRequestSchema = Type.Object(
  {
    token: Type.String({ minLength: 10, maxLength: 100 }),
    peerId: PeerIdString,
    csr: Type.String({ minLength: 100, maxLength: 16_384 }),
    hostname: Type.String({ minLength: 1, maxLength: 255 }),
  },
  { additionalProperties: false },
)
export type EnrollRequest = Static<typeof EnrollRequestSchema>
export const enrollRequestChecker = compileChecker(EnrollRequestSchema)

export interface EnrollResponse {
  certificate: string
  root: string
  appliance: { peerId: string; multiaddrs: string[]; signerCertificate: string }
}

interface TokenRecord {
  createdAt: string
  expiresAt: string
  label?: string
  usedAt?: string
  usedBy?: string
}

export interface EnrollmentDeps {
  db: StateDb
  devices: DeviceRegistry
  clock: Clock
  root: { certPem: string; privateKeyPem: string }
  appliance: () => EnrollResponse['appliance']
  tokenTtlHours: number
  agentCertValidDays: number
  log: Logger
}

const tokenKey = (token: string) => `token:${createHash('sha256').update(token).digest('hex')}`

/**
 * One-time enrollment tokens and agent certificates. Only a token's hash is stored; a token
 * is consumed in the same durable batch that records the device, so it can never be used
 * twice, not even across a crash.
 */
export class Enrollment {
  readonly #deps: EnrollmentDeps
  readonly #mutex = new Mutex()

  constructor(deps: EnrollmentDeps) {
    this.#deps = deps
  }

  async createToken(
    options: { ttlHours?: number; label?: string } = {},
  ): Promise<{ token: string; expiresAt: string }> {
    const ttlHours = options.ttlHours ?? this.#deps.tokenTtlHours
    if (!Number.isInteger(ttlHours) || ttlHours < 1 || ttlHours > 24 * 30) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'token lifetime must be 1 to 720 hours')
    }
    const now = this.#deps.clock.now()
    const token = `pst_${randomBytes(24).toString('base64url')}`
    const expiresAt = new Date(now + ttlHours * 3_600_000).toISOString()
    const rec: TokenRecord = {
      createdAt: new Date(now).toISOString(),
      expiresAt,
      ...(options.label ? { label: options.label } : {}),
    }
    await this.#deps.db.put(tokenKey(token), rec)
    this.#deps.log.info({ expiresAt, label: options.label }, 'enrollment token created')
    return { token, expiresAt }
  }

  async enroll(input: unknown): Promise<EnrollResponse> {
    const req = enrollRequestChecker.check(input, 'enrollment request')
    return this.#mutex.runExclusive(async () => {
      const { db, clock, devices, log } = this.#deps
      const now = clock.now()
      const key = tokenKey(req.token)
      const rec = await db.get<TokenRecord>(key)
      if (!rec) throw new EnrollmentError('PSW_ERR_TOKEN_INVALID', 'unknown enrollment token')
      if (rec.usedAt) {
        // A retry by the agent that used this token (its answer was lost, or it crashed before
        // saving it): proven by the CSR, it gets the same certificate again.
        if (rec.usedBy === req.peerId) {
          verifyCsr(req.csr, { expectedPeerId: req.peerId })
          const device = await devices.get(req.peerId)
          if (device) {
            log.info({ peer: req.peerId }, 'enrollment answer repeated for a retry')
            return {
              certificate: device.certificatePem,
              root: this.#deps.root.certPem,
              appliance: this.#deps.appliance(),
            }
          }
        }
        throw new EnrollmentError('PSW_ERR_TOKEN_USED', 'enrollment token was already used')
      }
      if (Date.parse(rec.expiresAt) <= now)
        throw new EnrollmentError('PSW_ERR_TOKEN_EXPIRED', 'enrollment token has expired')
      // Proof of possession first (the CSR is signed by the key the PeerId names), so a token
      // holder cannot probe which PeerIds are enrolled.
      verifyCsr(req.csr, { expectedPeerId: req.peerId })
      if (devices.isMember(req.peerId))
        throw new StateError('PSW_ERR_CONFLICT', `peer ${req.peerId} is already enrolled`)
      const certificate = issueAgentCert({
        issuer: this.#deps.root,
        csrPem: req.csr,
        peerId: req.peerId,
        validDays: this.#deps.agentCertValidDays,
        now,
      })
      const device = {
        peerId: req.peerId,
        hostname: req.hostname,
        certificatePem: certificate,
        enrolledAt: new Date(now).toISOString(),
      }
      await db.batch([
        { type: 'put', key, value: { ...rec, usedAt: device.enrolledAt, usedBy: req.peerId } },
        ...devices.putOps(device),
      ])
      devices.admitted(req.peerId)
      log.info({ peer: req.peerId, hostname: req.hostname }, 'agent enrolled')
      return { certificate, root: this.#deps.root.certPem, appliance: this.#deps.appliance() }
    })
  }
}
