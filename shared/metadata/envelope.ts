import { type KeyObject, sign, verify } from 'node:crypto'
import { type Static, Type } from '@sinclair/typebox'
import canonicalizeModule from 'canonicalize'
import { isPswError, TrustError } from '../errors.ts'
import { verifyChain } from '../pki/index.ts'
import { Sha256Hex } from './common-schema.ts'
import { compileChecker } from './schema-check.ts'

// canonicalize is CommonJS (`module.exports = fn`); its types describe an ES default export.
const canonicalize = canonicalizeModule as unknown as (value: unknown) => string | undefined

/** Domain separation: these signatures can never be mistaken for another protocol's. */
const SIGNING_PREFIX = Buffer.from('patchswarm-signed-v1\n')

export const SignedEnvelopeSchema = Type.Object(
  {
    signed: Type.Object({ type: Type.String({ maxLength: 64 }) }),
    signatures: Type.Array(
      Type.Object(
        { keyid: Sha256Hex, sig: Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9+/]+={0,2}$' }) },
        { additionalProperties: false },
      ),
      { maxItems: 4 },
    ),
    /** The signer's certificate first, then intermediates; the root is pinned, never taken from here. */
    certificates: Type.Array(Type.String({ maxLength: 16_384 }), { maxItems: 4 }),
  },
  { additionalProperties: false },
)

export type SignedEnvelope<T = unknown> = Omit<Static<typeof SignedEnvelopeSchema>, 'signed'> & { signed: T }

/** The appliance's online signing identity. */
export interface Signer {
  keyId: string
  certificatePem: string
  privateKey: KeyObject
}

/** Canonical (RFC 8785) bytes that are signed, with the domain prefix. */
export function signingBytes(signed: unknown): Buffer {
  const text = canonicalize(signed)
  if (text === undefined) throw new TypeError('cannot canonicalize value')
  return Buffer.concat([SIGNING_PREFIX, Buffer.from(text, 'utf8')])
}

export function signEnvelope<T extends { type: string }>(signed: T, signer: Signer): SignedEnvelope<T> {
  const sig = sign(null, signingBytes(signed), signer.privateKey).toString('base64')
  return { signed, signatures: [{ keyid: signer.keyId, sig }], certificates: [signer.certificatePem] }
}

const envelopeChecker = compileChecker(SignedEnvelopeSchema)

export interface VerifyOptions<T> {
  /** Expected `signed.type`. */
  type: string
  /** The pinned root certificate (PEM). */
  rootPem: string
  now: number
  /** Validates and types the signed body (schema + consistency). */
  validate: (signed: unknown) => T & { created: string; expires: string }
  /** Tolerated clock skew for `created` in the future. Default 5 minutes. */
  maxSkewMs?: number
}

export interface Verified<T> {
  value: T
  keyId: string
}

/**
 * Verifies a signed document, failing closed: no signature, a certificate that does not chain
 * to the pinned root, a bad signature, the wrong type, an invalid body or stale dates are all
 * refused with their own code. Signatures and chains are checked with node:crypto only.
 */
export function verifyEnvelope<T>(envelope: unknown, options: VerifyOptions<T>): Verified<T> {
  const env = envelopeChecker.check(envelope, 'signed envelope')
  if (env.signatures.length === 0) throw new TrustError('PSW_ERR_SIGNATURE_MISSING', `${options.type} is not signed`)
  const [leafPem, ...intermediatesPem] = env.certificates
  if (leafPem === undefined)
    throw new TrustError('PSW_ERR_UNKNOWN_KEY', `${options.type} carries no signer certificate`)
  let chain: { publicKey: KeyObject; keyId: string }
  try {
    chain = verifyChain({ leafPem, intermediatesPem, rootPem: options.rootPem, now: options.now })
  } catch (err) {
    if (isPswError(err) && err.code === 'PSW_ERR_CERT_CHAIN') {
      throw new TrustError(
        'PSW_ERR_UNKNOWN_KEY',
        `${options.type} is signed by a key the site's root does not certify`,
        {
          cause: err,
        },
      )
    }
    throw err
  }
  const signature = env.signatures.find((s) => s.keyid === chain.keyId)
  if (!signature) throw new TrustError('PSW_ERR_UNKNOWN_KEY', `no signature of ${options.type} by its certified key`)
  const ok = verify(null, signingBytes(env.signed), chain.publicKey, Buffer.from(signature.sig, 'base64'))
  if (!ok) throw new TrustError('PSW_ERR_SIGNATURE_INVALID', `signature of ${options.type} does not verify`)
  if (env.signed.type !== options.type) {
    throw new TrustError('PSW_ERR_METADATA_TYPE', `expected ${options.type}, got ${env.signed.type}`)
  }
  const value = options.validate(env.signed)
  checkFreshness(value, options.now, options.maxSkewMs ?? 5 * 60_000, options.type)
  return { value, keyId: chain.keyId }
}

/** Refuses expired metadata (freeze attack) and metadata from the future (bad clock). */
export function checkFreshness(
  doc: { created: string; expires: string },
  now: number,
  maxSkewMs: number,
  what: string,
) {
  // NaN compares false both ways: an unparsable date must never mean "not expired".
  if (!Number.isFinite(Date.parse(doc.expires)) || !Number.isFinite(Date.parse(doc.created))) {
    throw new TrustError('PSW_ERR_METADATA_EXPIRED', `${what} has no valid dates`)
  }
  if (Date.parse(doc.expires) <= now) {
    throw new TrustError('PSW_ERR_METADATA_EXPIRED', `${what} expired at ${doc.expires}`, {
      details: { expires: doc.expires, now: new Date(now).toISOString() },
    })
  }
  if (Date.parse(doc.created) > now + maxSkewMs) {
    throw new TrustError('PSW_ERR_METADATA_NOT_YET_VALID', `${what} is dated ${doc.created}, in the future`, {
      details: { created: doc.created, now: new Date(now).toISOString() },
    })
  }
}

/**
 * Rollback protection: refuses a version older than the newest seen. An equal version is
 * accepted only for the very same document (same signed bytes digest).
 */
export function checkNotOlder(
  seen: { version: number; digest: string } | undefined,
  incoming: { version: number; digest: string },
  what: string,
): void {
  if (!seen) return
  if (incoming.version < seen.version || (incoming.version === seen.version && incoming.digest !== seen.digest)) {
    throw new TrustError(
      'PSW_ERR_METADATA_ROLLBACK',
      `${what} version ${incoming.version} is older than version ${seen.version} already seen`,
      { details: { seen: seen.version, got: incoming.version } },
    )
  }
}
