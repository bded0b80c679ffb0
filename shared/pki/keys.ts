/**
 * Ed25519 signing keys with node:crypto: generation, conversion between PEM/DER/KeyObject,
 * the key id (SHA-256 of the SubjectPublicKeyInfo) and plain sign/verify.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  sign,
  verify,
} from 'node:crypto'
import { TrustError } from '../errors.ts'

/** A fresh key pair as PEM: PKCS#8 private key and SPKI public key. */
export interface SigningKeyPem {
  privateKeyPem: string
  publicKeyPem: string
}

/** A private key as PKCS#8 PEM or a node:crypto KeyObject. */
export type PrivateKeyInput = string | KeyObject
/** A public key as SPKI PEM, SPKI DER or a KeyObject (a private KeyObject yields its public half). */
export type PublicKeyInput = string | Uint8Array | KeyObject

/** Generates an Ed25519 key pair with node:crypto. */
export function generateSigningKey(): SigningKeyPem {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

/** Parses an Ed25519 private key; any other key type → PSW_ERR_KEY_INVALID. */
export function toPrivateKey(input: PrivateKeyInput): KeyObject {
  let key: KeyObject
  try {
    key = input instanceof KeyObject ? input : createPrivateKey({ key: input, format: 'pem' })
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'private key cannot be parsed', { cause: err })
  }
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'expected an Ed25519 private key', {
      details: { type: key.type, algorithm: key.asymmetricKeyType },
    })
  }
  return key
}

/** Parses an Ed25519 public key; any other key type → PSW_ERR_KEY_INVALID. */
export function toPublicKey(input: PublicKeyInput): KeyObject {
  let key: KeyObject
  try {
    if (input instanceof KeyObject) {
      key = input.type === 'private' ? createPublicKey(input) : input
    } else if (typeof input === 'string') {
      key = createPublicKey({ key: input, format: 'pem' })
    } else {
      key = createPublicKey({ key: Buffer.from(input), format: 'der', type: 'spki' })
    }
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'public key cannot be parsed', { cause: err })
  }
  if (key.type !== 'public' || key.asymmetricKeyType !== 'ed25519') {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'expected an Ed25519 public key', {
      details: { type: key.type, algorithm: key.asymmetricKeyType },
    })
  }
  return key
}

/** The DER SubjectPublicKeyInfo of a key (the public half of a private key). */
export function spkiDer(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  return pub.export({ type: 'spki', format: 'der' })
}

/**
 * The key id: lowercase hex SHA-256 of the DER SubjectPublicKeyInfo. Signing keys are named by
 * it (`keyid` in signed envelopes).
 */
export function publicKeyFingerprint(key: PublicKeyInput): string {
  return createHash('sha256')
    .update(spkiDer(toPublicKey(key)))
    .digest('hex')
}

/**
 * The certificate subjectKeyIdentifier: the leftmost 160 bits of SHA-256 over the DER
 * SubjectPublicKeyInfo (RFC 7093 §2 method 4, truncated) — i.e. the first 40 hex digits of the key id.
 */
export function subjectKeyIdentifier(key: KeyObject): Buffer {
  return createHash('sha256').update(spkiDer(key)).digest().subarray(0, 20)
}

/** Whether two keys have the same public key (compares SPKI DER). */
export function samePublicKey(a: KeyObject, b: KeyObject): boolean {
  return spkiDer(a).equals(spkiDer(b))
}

/** Signs `data` with an Ed25519 private key (node:crypto). */
export function signEd25519(data: Uint8Array, privateKey: PrivateKeyInput): Buffer {
  return sign(null, data, toPrivateKey(privateKey))
}

/**
 * Verifies an Ed25519 signature with node:crypto (OpenSSL), which rejects non-canonical
 * signatures (S ≥ L). Returns false for any bad signature;
 * a non-Ed25519 key → PSW_ERR_KEY_INVALID.
 */
export function verifyEd25519(data: Uint8Array, signature: Uint8Array, publicKey: PublicKeyInput): boolean {
  const key = toPublicKey(publicKey)
  if (signature.length !== 64) return false
  try {
    return verify(null, data, key, signature)
  } catch {
    return false
  }
}
