/**
 * PKCS#10 certification requests for agents. Written with node-forge (structure) and signed
 * with the agent's libp2p Ed25519 identity key through node:crypto; verified with node:crypto
 * over the exact CertificationRequestInfo bytes received (located with the strict DER reader).
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { isPswError, TrustError } from '../errors.ts'
import { DerError, expectTag, readChildren, readSingle, Tag } from './der-reader.ts'
import { type PrivateKeyInput, toPrivateKey } from './keys.ts'
import { assertKeyOfPeer, canonicalPeerId } from './peer-keys.ts'
import { decodePem } from './pem.ts'
import { ED25519_ALGORITHM_ID, ed25519Signer, writeCsr } from './x509-writer.ts'

export interface CreateCsrOptions {
  peerId: string | PeerId
  /** The agent's identity key (see `libp2pPrivateKeyToKeyObject`); must be the PeerId's key. */
  privateKey: PrivateKeyInput
}

/** Creates a CSR with subject `CN=<peerId>`, signed by the PeerId's own key (proof of possession). */
export function createCsr(options: CreateCsrOptions): string {
  const privateKey = toPrivateKey(options.privateKey)
  const peerId = canonicalPeerId(options.peerId)
  const publicKey = createPublicKey(privateKey)
  assertKeyOfPeer(publicKey, peerId, 'CSR')
  return writeCsr({ subjectCommonName: peerId, publicKey, signer: ed25519Signer(privateKey) })
}

export interface VerifyCsrOptions {
  /** The PeerId the request must be for (e.g. the authenticated peer of the enrollment call). */
  expectedPeerId: string | PeerId
}

/**
 * Verifies a CSR and returns its subject public key. Over 16 KiB → PSW_ERR_TOO_LARGE;
 * malformed, not Ed25519, or a self-signature that does not verify → PSW_ERR_CSR_INVALID;
 * a key that is not the expected PeerId's → PSW_ERR_CERT_PEER_MISMATCH.
 *
 * The CSR subject is not trusted: certificates take their subject from the PeerId.
 */
export function verifyCsr(pem: string, options: VerifyCsrOptions): KeyObject {
  const der = decodePem(pem, 'CERTIFICATE REQUEST', 'PSW_ERR_CSR_INVALID')
  let publicKey: KeyObject
  try {
    publicKey = checkSelfSignature(der)
  } catch (err) {
    if (isPswError(err)) throw err
    throw new TrustError('PSW_ERR_CSR_INVALID', `certification request is malformed: ${(err as Error).message}`, {
      cause: err,
    })
  }
  assertKeyOfPeer(publicKey, options.expectedPeerId, 'CSR')
  return publicKey
}

/** Parses `SEQUENCE { CertificationRequestInfo, AlgorithmIdentifier, BIT STRING }` and checks the signature. */
function checkSelfSignature(der: Buffer): KeyObject {
  const parts = readChildren(readSingle(der, Tag.SEQUENCE))
  if (parts.length !== 3) throw new DerError('expected info, algorithm and signature')
  const info = expectTag(parts[0], Tag.SEQUENCE)
  const algorithm = expectTag(parts[1], Tag.SEQUENCE)
  const signature = expectTag(parts[2], Tag.BIT_STRING).value

  // CertificationRequestInfo: version 0, subject, SubjectPublicKeyInfo, [0] attributes
  const fields = readChildren(info)
  if (fields.length !== 4) throw new DerError('CertificationRequestInfo must have 4 fields')
  const version = expectTag(fields[0], Tag.INTEGER)
  if (version.value.length !== 1 || version.value[0] !== 0) throw new DerError('unsupported CSR version')
  expectTag(fields[1], Tag.SEQUENCE)
  const spki = expectTag(fields[2], Tag.SEQUENCE)
  expectTag(fields[3], Tag.CONTEXT_0)

  if (!algorithm.bytes.equals(ED25519_ALGORITHM_ID)) {
    throw new TrustError('PSW_ERR_CSR_INVALID', 'CSR signature algorithm must be Ed25519 without parameters')
  }
  if (signature.length !== 65 || signature[0] !== 0) throw new DerError('Ed25519 signature must be 64 bytes')

  let publicKey: KeyObject
  try {
    publicKey = createPublicKey({ key: Buffer.from(spki.bytes), format: 'der', type: 'spki' })
  } catch (err) {
    throw new TrustError('PSW_ERR_CSR_INVALID', 'CSR public key cannot be parsed', { cause: err })
  }
  if (publicKey.asymmetricKeyType !== 'ed25519') {
    throw new TrustError('PSW_ERR_CSR_INVALID', 'CSR key must be Ed25519', {
      details: { algorithm: publicKey.asymmetricKeyType },
    })
  }
  // The signed bytes are exactly the CertificationRequestInfo as received (info.bytes).
  if (!verify(null, info.bytes, publicKey, signature.subarray(1))) {
    throw new TrustError('PSW_ERR_CSR_INVALID', 'CSR signature does not verify')
  }
  return publicKey
}
