import { describe, expect, it } from 'vitest'
import { ASSIGNMENT_TYPE, type Assignment, validateAssignment } from './assignment-schema.ts'
import { checkNotOlder, signEnvelope, signingBytes, verifyEnvelope } from './envelope.ts'
import { MANIFEST_TYPE, validateManifest } from './manifest-schema.ts'
import { makeTestSigner } from './test-signer.ts'

const NOW = Date.UTC(2026, 10, 23, 12)
const PEER = '12D3KooWQNUHuPsz4HpZ43qh54SUQsc9EcuuSBTno6Tq31NEDEiN'

const assignment = (over: Partial<Assignment> = {}): Assignment => ({
  type: ASSIGNMENT_TYPE,
  specVersion: 1,
  version: 7,
  device: PEER,
  created: new Date(NOW - 60_000).toISOString(),
  expires: new Date(NOW + 86_400_000).toISOString(),
  bundles: [{ bundleId: 'ab'.repeat(32), manifestVersion: 3, action: 'install' }],
  ...over,
})

describe('signed envelopes', () => {
  const { rootPem, signer } = makeTestSigner(NOW)
  const opts = { type: ASSIGNMENT_TYPE, rootPem, now: NOW, validate: validateAssignment }

  it('verifies a document signed by the certified appliance key', () => {
    const env = signEnvelope(assignment(), signer)
    const { value, keyId } = verifyEnvelope(env, opts)
    expect(value.version).toBe(7)
    expect(keyId).toBe(signer.keyId)
  })

  it('signs canonical bytes: key order does not matter, content does', () => {
    const a = assignment()
    const reordered = Object.fromEntries(Object.entries(a).reverse())
    expect(signingBytes(a).equals(signingBytes(reordered))).toBe(true)
    expect(signingBytes(a).equals(signingBytes({ ...a, version: 8 }))).toBe(false)
    expect(signingBytes(a).subarray(0, 21).toString()).toBe('patchswarm-signed-v1\n')
  })

  it('refuses, each with its own code: unsigned, tampered, wrong type, no certificate, foreign root', () => {
    const env = signEnvelope(assignment(), signer)
    expect(() => verifyEnvelope({ ...env, signatures: [] }, opts)).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_SIGNATURE_MISSING' }),
    )
    expect(() => verifyEnvelope({ ...env, signed: { ...env.signed, version: 9 } }, opts)).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_SIGNATURE_INVALID' }),
    )
    expect(() => verifyEnvelope(env, { ...opts, type: MANIFEST_TYPE, validate: validateManifest })).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_METADATA_TYPE' }),
    )
    expect(() => verifyEnvelope({ ...env, certificates: [] }, opts)).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_UNKNOWN_KEY' }),
    )
    const other = makeTestSigner(NOW)
    expect(() => verifyEnvelope(signEnvelope(assignment(), other.signer), opts)).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_UNKNOWN_KEY' }),
    )
    const wrongKeyId = { ...env, signatures: [{ keyid: 'cd'.repeat(32), sig: env.signatures[0]!.sig }] }
    expect(() => verifyEnvelope(wrongKeyId, opts)).toThrow(expect.objectContaining({ code: 'PSW_ERR_UNKNOWN_KEY' }))
  })

  it('refuses malformed envelopes and bodies with schema codes, never a crash', () => {
    for (const bad of [null, 1, 'x', [], {}, { signed: {}, signatures: [], certificates: [] }]) {
      expect(() => verifyEnvelope(bad, opts)).toThrow(expect.objectContaining({ code: 'PSW_ERR_SCHEMA' }))
    }
    const env = signEnvelope({ ...assignment(), extra: 1 } as Assignment, signer)
    expect(() => verifyEnvelope(env, opts)).toThrow(expect.objectContaining({ code: 'PSW_ERR_ASSIGNMENT_INVALID' }))
  })

  it('refuses expired metadata and metadata from the future (row 4)', () => {
    const env = signEnvelope(assignment(), signer)
    expect(() => verifyEnvelope(env, { ...opts, now: NOW + 2 * 86_400_000 })).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_METADATA_EXPIRED' }),
    )
    const future = signEnvelope(assignment({ created: new Date(NOW + 3_600_000).toISOString() }), signer)
    expect(() => verifyEnvelope(future, opts)).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_METADATA_NOT_YET_VALID' }),
    )
    // an agent clock set far back: the signer certificate is not valid yet
    expect(() => verifyEnvelope(env, { ...opts, now: NOW - 365 * 86_400_000 })).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_CERT_EXPIRED' }),
    )
  })

  it('rollback guard: older versions and a different document at the same version are refused (row 3)', () => {
    const seen = { version: 5, digest: 'a' }
    expect(() => checkNotOlder(seen, { version: 4, digest: 'b' }, 'x')).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_METADATA_ROLLBACK' }),
    )
    expect(() => checkNotOlder(seen, { version: 5, digest: 'b' }, 'x')).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_METADATA_ROLLBACK' }),
    )
    expect(() => checkNotOlder(seen, { version: 5, digest: 'a' }, 'x')).not.toThrow()
    expect(() => checkNotOlder(seen, { version: 6, digest: 'c' }, 'x')).not.toThrow()
    expect(() => checkNotOlder(undefined, { version: 1, digest: 'c' }, 'x')).not.toThrow()
  })
})
