/**
 * The bridge between libp2p identities and node:crypto keys. An agent's certificate key IS
 * its libp2p Ed25519 identity key, so its certificate is bound to its PeerId.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { TrustError, ValidationError } from '../errors.ts'
import { samePublicKey, spkiDer } from './keys.ts'

/** PKCS#8 DER header for an Ed25519 private key; the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
/** SPKI DER header for an Ed25519 public key; the 32-byte key follows. */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/** The SAN URI that names a peer in its certificate. */
export function peerUri(peerId: string): string {
  return `urn:libp2p:peer:${peerId}`
}

/** Converts a 32-byte raw Ed25519 public key to a node:crypto KeyObject. */
export function ed25519PublicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'an Ed25519 public key has 32 bytes', {
      details: { length: raw.length },
    })
  }
  try {
    return createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, raw]), format: 'der', type: 'spki' })
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'invalid Ed25519 public key', { cause: err })
  }
}

/** The raw 32 bytes of an Ed25519 public KeyObject (the tail of its SPKI). */
export function ed25519RawPublicKey(key: KeyObject): Buffer {
  const der = spkiDer(key)
  if (der.length !== 44 || !der.subarray(0, 12).equals(SPKI_ED25519_PREFIX)) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'not an Ed25519 key')
  }
  return der.subarray(12)
}

/**
 * Converts a libp2p Ed25519 private key (`.raw` is seed ‖ public key, 64 bytes) to a
 * node:crypto KeyObject. Checks that the public half matches the seed.
 */
export function libp2pPrivateKeyToKeyObject(key: PrivateKey): KeyObject {
  if (key.type !== 'Ed25519') {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'only Ed25519 libp2p keys are supported', {
      details: { type: key.type },
    })
  }
  const raw = key.raw
  if (raw.length !== 64) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'libp2p Ed25519 private key must have 64 bytes')
  }
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519_PREFIX, raw.subarray(0, 32)]),
      format: 'der',
      type: 'pkcs8',
    })
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'invalid libp2p Ed25519 private key', { cause: err })
  }
  if (!ed25519RawPublicKey(privateKey).equals(raw.subarray(32))) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'libp2p private key: public half does not match the seed')
  }
  return privateKey
}

/** Parses a PeerId string; unparsable → PSW_ERR_INVALID_ARGUMENT. */
export function parsePeerId(peerId: string | PeerId): PeerId {
  if (typeof peerId !== 'string') return peerId
  try {
    return peerIdFromString(peerId)
  } catch (err) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'not a valid PeerId', { cause: err })
  }
}

/** The canonical (base58btc) string of a PeerId given in any accepted form. */
export function canonicalPeerId(peerId: string | PeerId): string {
  return parsePeerId(peerId).toString()
}

/**
 * The Ed25519 public key embedded in a PeerId, as a KeyObject. PeerIds of other key types
 * → PSW_ERR_KEY_INVALID (agents must use Ed25519 identities).
 */
export function peerIdToPublicKey(peerId: string | PeerId): KeyObject {
  const id = parsePeerId(peerId)
  if (id.type !== 'Ed25519') {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'only Ed25519 PeerIds are supported', { details: { type: id.type } })
  }
  return ed25519PublicKeyFromRaw(id.publicKey.raw)
}

/** Throws PSW_ERR_CERT_PEER_MISMATCH unless `key` is the PeerId's own public key. */
export function assertKeyOfPeer(key: KeyObject, peerId: string | PeerId, what: string): void {
  if (!samePublicKey(key, peerIdToPublicKey(peerId))) {
    throw new TrustError('PSW_ERR_CERT_PEER_MISMATCH', `${what}: key does not belong to PeerId ${String(peerId)}`)
  }
}
