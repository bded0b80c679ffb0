/**
 * What the site PKI issues (all keys Ed25519, written by forge via x509-writer.ts):
 *
 *   root CA (self-signed, CA:true pathLen 1, keyCertSign+cRLSign)
 *   ├── appliance certificate (CA:false, digitalSignature) — signs manifests and assignments
 *   └── agent certificates   (CA:false, digitalSignature, CN and SAN = libp2p PeerId)
 *
 * The appliance is deliberately NOT a CA: agent certificates are issued by the root directly,
 * so a leaked online appliance key cannot mint agent identities through the chain.
 */
import { createPublicKey, type KeyObject } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { TrustError, ValidationError } from '../errors.ts'
import { certificateValidity, parseCertificatePem } from './cert-verify.ts'
import { verifyCsr } from './csr.ts'
import {
  type PrivateKeyInput,
  type PublicKeyInput,
  publicKeyFingerprint,
  samePublicKey,
  subjectKeyIdentifier,
  toPrivateKey,
  toPublicKey,
} from './keys.ts'
import { assertKeyOfPeer, canonicalPeerId, peerUri } from './peer-keys.ts'
import { readSubjectKeyId, subjectNameDer } from './x509-fields.ts'
import { ed25519Signer, writeCertificate } from './x509-writer.ts'

/** notBefore is backdated by this much so that peers with slightly slow clocks accept a fresh certificate. */
export const NOT_BEFORE_BACKDATE_MS = 5 * 60_000
const DAY_MS = 86_400_000
const MAX_VALID_DAYS = 36_500

/** A CA certificate and its private key. */
export interface IssuerCredentials {
  certPem: string
  privateKeyPem: PrivateKeyInput
}

export interface CreateRootCaOptions {
  commonName: string
  privateKeyPem: PrivateKeyInput
  /** Optional; must match the private key when given. */
  publicKeyPem?: PublicKeyInput
  validDays: number
  /** Milliseconds since the epoch. */
  now: number
}

/** Creates a self-signed root CA certificate (PEM): CA:true pathLen 1, keyCertSign + cRLSign. */
export function createRootCa(options: CreateRootCaOptions): string {
  const privateKey = toPrivateKey(options.privateKeyPem)
  const publicKey = createPublicKey(privateKey)
  if (options.publicKeyPem !== undefined && !samePublicKey(toPublicKey(options.publicKeyPem), publicKey)) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'root public key does not match its private key')
  }
  const ski = subjectKeyIdentifier(publicKey)
  return writeCertificate({
    subjectCommonName: checkCommonName(options.commonName),
    publicKey,
    ...validity(options.now, options.validDays, Number.POSITIVE_INFINITY),
    extensions: {
      basicConstraints: { ca: true, pathLen: 1 },
      keyUsage: { keyCertSign: true, cRLSign: true },
      subjectKeyId: ski,
      authorityKeyId: ski,
    },
    signer: ed25519Signer(privateKey),
  })
}

export interface IssueApplianceCertOptions {
  root: IssuerCredentials
  publicKeyPem: PublicKeyInput
  commonName: string
  validDays: number
  now: number
  /** Host names the appliance is reached by (SAN DNS). */
  dnsNames?: string[]
}

/**
 * Issues the appliance's signing certificate from the root: CA:false, digitalSignature,
 * SAN URI `urn:patchswarm:appliance:<keyId>` (+ DNS names). Never valid beyond the root.
 */
export function issueApplianceCert(options: IssueApplianceCertOptions): string {
  const publicKey = toPublicKey(options.publicKeyPem)
  return issueLeaf(options.root, publicKey, checkCommonName(options.commonName), options, {
    dns: options.dnsNames ?? [],
    uri: [`urn:patchswarm:appliance:${publicKeyFingerprint(publicKey)}`],
  })
}

export interface IssueAgentCertOptions {
  /** The root CA (agents are certified by the root directly; the appliance is not a CA). */
  issuer: IssuerCredentials
  peerId: string | PeerId
  /** The agent's CSR; verified and checked against `peerId`. Either this or `publicKey`. */
  csrPem?: string
  /** The agent's public key when no CSR is used; must be the PeerId's key. */
  publicKey?: PublicKeyInput
  validDays: number
  now: number
}

/**
 * Issues an agent certificate bound to its PeerId: subject CN = PeerId, SAN URI
 * `urn:libp2p:peer:<peerId>`, key = the PeerId's Ed25519 key (else PSW_ERR_CERT_PEER_MISMATCH).
 */
export function issueAgentCert(options: IssueAgentCertOptions): string {
  const peerId = canonicalPeerId(options.peerId)
  let publicKey: KeyObject
  if (options.csrPem !== undefined) {
    publicKey = verifyCsr(options.csrPem, { expectedPeerId: peerId })
  } else if (options.publicKey !== undefined) {
    publicKey = toPublicKey(options.publicKey)
    assertKeyOfPeer(publicKey, peerId, 'agent certificate')
  } else {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'issueAgentCert needs csrPem or publicKey')
  }
  return issueLeaf(options.issuer, publicKey, peerId, options, { uri: [peerUri(peerId)] })
}

function issueLeaf(
  issuer: IssuerCredentials,
  publicKey: KeyObject,
  commonName: string,
  time: { now: number; validDays: number },
  altNames: { dns?: string[]; uri: string[] },
): string {
  const issuerCert = parseCertificatePem(issuer.certPem)
  const issuerKey = toPrivateKey(issuer.privateKeyPem)
  if (!issuerCert.ca) throw new TrustError('PSW_ERR_CERT_NOT_CA', 'the issuer certificate is not a CA')
  if (!samePublicKey(createPublicKey(issuerKey), issuerCert.publicKey)) {
    throw new TrustError('PSW_ERR_KEY_INVALID', "issuer private key does not match the issuer's certificate")
  }
  const issuerValidity = certificateValidity(issuerCert)
  if (time.now < issuerValidity.notBefore || time.now > issuerValidity.notAfter) {
    throw new TrustError('PSW_ERR_CERT_EXPIRED', 'the issuer certificate is outside its validity period')
  }
  return writeCertificate({
    subjectCommonName: commonName,
    issuerNameDer: subjectNameDer(issuerCert.raw),
    publicKey,
    ...validity(time.now, time.validDays, issuerValidity.notAfter),
    extensions: {
      basicConstraints: { ca: false },
      keyUsage: { digitalSignature: true },
      extKeyUsage: { serverAuth: true, clientAuth: true },
      authorityKeyId: readSubjectKeyId(issuerCert.raw) ?? subjectKeyIdentifier(issuerCert.publicKey),
      altNames,
    },
    signer: ed25519Signer(issuerKey),
  })
}

function validity(now: number, validDays: number, notAfterLimit: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(now)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', '`now` must be a finite number')
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > MAX_VALID_DAYS) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `validDays must be an integer in 1..${MAX_VALID_DAYS}`)
  }
  return {
    notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(Math.min(now + validDays * DAY_MS, notAfterLimit)),
  }
}

/** X.520 upper bound for a CN is 64 characters. */
function checkCommonName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 64 || /\p{Cc}/u.test(name)) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'commonName must be 1..64 printable characters')
  }
  return name
}
