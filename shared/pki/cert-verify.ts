/**
 * Certificate verification — node:crypto only (X509Certificate, OpenSSL). node-forge is never
 * used here: it has accepted forged RSA signatures, non-canonical Ed25519 signatures and
 * non-CA issuers (anchors.md, faults.md rows 15–16).
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto'
import type { PeerId } from '@libp2p/interface'
import { TrustError, ValidationError } from '../errors.ts'
import { publicKeyFingerprint } from './keys.ts'
import { assertKeyOfPeer, canonicalPeerId, peerUri } from './peer-keys.ts'
import { decodePem } from './pem.ts'
import { KeyUsageBit, readBasicConstraints, readKeyUsage } from './x509-fields.ts'

/** Most intermediates accepted between a leaf and the pinned root. */
export const MAX_INTERMEDIATES = 4

export interface VerifyChainOptions {
  leafPem: string
  /** Issuer of the leaf first, then its issuer, … up to (not including) the root. */
  intermediatesPem?: string[]
  /** The pinned root certificate; the chain must end exactly here. Never taken from the peer. */
  rootPem: string
  /** Milliseconds since the epoch. */
  now: number
  /** `signing` (default): the leaf must be CA:false with keyUsage digitalSignature. `any`: no leaf checks. */
  purpose?: 'signing' | 'any'
}

export interface VerifiedChain {
  leaf: X509Certificate
  publicKey: KeyObject
  /** {@link publicKeyFingerprint} of the leaf key. */
  keyId: string
}

/** Parses one PEM certificate with node:crypto; malformed → PSW_ERR_CERT_INVALID, over 16 KiB → PSW_ERR_TOO_LARGE. */
export function parseCertificatePem(pem: string): X509Certificate {
  const der = decodePem(pem, 'CERTIFICATE', 'PSW_ERR_CERT_INVALID')
  let cert: X509Certificate
  try {
    cert = new X509Certificate(der)
  } catch (err) {
    throw new TrustError('PSW_ERR_CERT_INVALID', 'certificate cannot be parsed', { cause: err })
  }
  if (!cert.raw.equals(der)) throw new TrustError('PSW_ERR_CERT_INVALID', 'trailing bytes after the certificate')
  return cert
}

/** The validity period in milliseconds since the epoch (bounds inclusive). */
export function certificateValidity(cert: X509Certificate): { notBefore: number; notAfter: number } {
  const dates = cert as X509Certificate & { validFromDate?: Date; validToDate?: Date } // Node ≥ 22.10 only
  const notBefore = dates.validFromDate?.getTime() ?? Date.parse(cert.validFrom)
  const notAfter = dates.validToDate?.getTime() ?? Date.parse(cert.validTo)
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter)) {
    throw new TrustError('PSW_ERR_CERT_INVALID', 'certificate validity dates cannot be read')
  }
  return { notBefore, notAfter }
}

/** SHA-256 of the certificate's DER as lowercase hex — the root fingerprint an operator compares. */
export function fingerprint(pem: string): string {
  return createHash('sha256').update(parseCertificatePem(pem).raw).digest('hex')
}

/**
 * Verifies `leaf → intermediates… → root` against the pinned root at time `now`. Each link:
 * issuer name and signature (node:crypto) → PSW_ERR_CERT_CHAIN; issuer basicConstraints CA:true
 * → PSW_ERR_CERT_NOT_CA; pathLen and `checkIssued` (key ids, keyCertSign) → PSW_ERR_CERT_CHAIN.
 * Then validity dates of every certificate → PSW_ERR_CERT_EXPIRED, and the leaf's usage
 * → PSW_ERR_CERT_USAGE. Every key must be Ed25519 (PSW_ERR_KEY_INVALID).
 */
export function verifyChain(options: VerifyChainOptions): VerifiedChain {
  const intermediatesPem = options.intermediatesPem ?? []
  if (intermediatesPem.length > MAX_INTERMEDIATES) {
    throw new ValidationError('PSW_ERR_TOO_LARGE', `more than ${MAX_INTERMEDIATES} intermediate certificates`)
  }
  const leaf = parseCertificatePem(options.leafPem)
  const root = parseCertificatePem(options.rootPem)
  const chain = [leaf, ...intermediatesPem.map(parseCertificatePem), root]

  chain.forEach((cert, i) => {
    if (cert.publicKey.asymmetricKeyType !== 'ed25519') {
      throw new TrustError('PSW_ERR_KEY_INVALID', 'certificate key is not Ed25519', {
        details: { position: i, subject: cert.subject, algorithm: cert.publicKey.asymmetricKeyType },
      })
    }
  })
  if (!root.ca)
    throw new TrustError('PSW_ERR_CERT_NOT_CA', 'the pinned root is not a CA', { details: { subject: root.subject } })
  if (!signedBy(root, root) || !root.checkIssued(root)) {
    throw new TrustError('PSW_ERR_CERT_CHAIN', 'the pinned root is not a valid self-signed certificate')
  }
  for (let i = 0; i + 1 < chain.length; i++) checkLink(chain[i]!, chain[i + 1]!, i + 1)

  for (const [i, cert] of chain.entries()) {
    const { notBefore, notAfter } = certificateValidity(cert)
    if (options.now < notBefore || options.now > notAfter) {
      throw new TrustError('PSW_ERR_CERT_EXPIRED', 'certificate is outside its validity period', {
        details: { position: i, subject: cert.subject, validFrom: cert.validFrom, validTo: cert.validTo },
      })
    }
  }
  if ((options.purpose ?? 'signing') === 'signing') checkSigningLeaf(leaf)
  return { leaf, publicKey: leaf.publicKey, keyId: publicKeyFingerprint(leaf.publicKey) }
}

export interface VerifyAgentCertOptions {
  certPem: string
  rootPem: string
  peerId: string | PeerId
  now: number
  intermediatesPem?: string[]
}

/**
 * {@link verifyChain} plus the binding to a libp2p PeerId: subject `CN=<peerId>`, SAN URI
 * `urn:libp2p:peer:<peerId>` and the certificate key equal to the PeerId's Ed25519 key, else
 * PSW_ERR_CERT_PEER_MISMATCH.
 */
export function verifyAgentCert(options: VerifyAgentCertOptions): VerifiedChain & { peerId: string } {
  const peerId = canonicalPeerId(options.peerId)
  const verified = verifyChain({
    leafPem: options.certPem,
    intermediatesPem: options.intermediatesPem,
    rootPem: options.rootPem,
    now: options.now,
    purpose: 'signing',
  })
  const { leaf } = verified
  if (leaf.subject !== `CN=${peerId}`) {
    throw new TrustError('PSW_ERR_CERT_PEER_MISMATCH', 'certificate subject is not the PeerId', {
      details: { subject: leaf.subject, peerId },
    })
  }
  const altNames = leaf.subjectAltName?.split(', ') ?? []
  if (!altNames.includes(`URI:${peerUri(peerId)}`)) {
    throw new TrustError('PSW_ERR_CERT_PEER_MISMATCH', 'certificate SAN does not name the PeerId', {
      details: { subjectAltName: leaf.subjectAltName, peerId },
    })
  }
  assertKeyOfPeer(verified.publicKey, peerId, 'agent certificate')
  return { ...verified, peerId }
}

function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.verify(issuer.publicKey)
  } catch {
    return false
  }
}

/** `issuer` at chain position `position` (the leaf is 0) issued `cert`. */
function checkLink(cert: X509Certificate, issuer: X509Certificate, position: number): void {
  const details = { position, subject: cert.subject, issuer: issuer.subject }
  if (cert.issuer !== issuer.subject || !signedBy(cert, issuer)) {
    throw new TrustError('PSW_ERR_CERT_CHAIN', 'certificate is not signed by the next certificate of the chain', {
      details,
    })
  }
  // X509Certificate.ca is OpenSSL's X509_check_ca() == 1: true only with basicConstraints CA:true.
  if (!issuer.ca) {
    throw new TrustError('PSW_ERR_CERT_NOT_CA', 'issuer certificate is not a CA (basicConstraints CA:true)', {
      details,
    })
  }
  let pathLen: number | undefined
  try {
    pathLen = readBasicConstraints(issuer.raw)?.pathLen
  } catch (err) {
    throw new TrustError('PSW_ERR_CERT_INVALID', 'issuer extensions cannot be read', { cause: err, details })
  }
  // Certificates strictly between the leaf and this issuer are intermediate CAs.
  if (pathLen !== undefined && position - 1 > pathLen) {
    throw new TrustError('PSW_ERR_CERT_CHAIN', 'chain exceeds the issuer pathLenConstraint', {
      details: { ...details, pathLen },
    })
  }
  if (!cert.checkIssued(issuer)) {
    throw new TrustError('PSW_ERR_CERT_CHAIN', 'issuer does not match (key identifier or keyCertSign)', { details })
  }
}

function checkSigningLeaf(leaf: X509Certificate): void {
  if (leaf.ca) throw new TrustError('PSW_ERR_CERT_USAGE', 'a CA certificate cannot be used as a signing leaf')
  let usage: Set<number> | undefined
  try {
    usage = readKeyUsage(leaf.raw)
  } catch (err) {
    throw new TrustError('PSW_ERR_CERT_INVALID', 'leaf keyUsage cannot be read', { cause: err })
  }
  if (!usage?.has(KeyUsageBit.digitalSignature)) {
    throw new TrustError('PSW_ERR_CERT_USAGE', 'leaf certificate lacks keyUsage digitalSignature')
  }
}
