/**
 * Low-level certificate and CSR writer. node-forge builds the structure (names, validity,
 * serial, extensions) but its X.509 code only knows RSA keys, so forge is handed a tiny
 * dummy RSA public key and afterwards the SubjectPublicKeyInfo node of its ASN.1 tree is
 * replaced by the real key's SPKI (from node:crypto), and the signature AlgorithmIdentifier
 * by the signer's (Ed25519: OID 1.3.101.112, no parameters; the web PKI: ecdsa-with-SHA256).
 * The TBS bytes are signed with
 * node:crypto. No policy here: cert-builder.ts decides what is issued; tests use this
 * directly to craft hostile certificates.
 */
import { type KeyObject, randomBytes, sign } from 'node:crypto'
import { isIP } from 'node:net'
import forge from 'node-forge'
import { PswError } from '../errors.ts'
import { spkiDer, subjectKeyIdentifier } from './keys.ts'
import { encodePem } from './pem.ts'

const { asn1 } = forge

/** AlgorithmIdentifier for Ed25519: SEQUENCE { OID 1.3.101.112 } — parameters absent (RFC 8410). */
export const ED25519_ALGORITHM_ID = Buffer.from('300506032b6570', 'hex')

/** Produces the signature over the TBS bytes, and names its algorithm. */
export interface Signer {
  /** DER of the AlgorithmIdentifier written into the TBS and the outer structure. */
  algorithmIdentifierDer: Buffer
  sign(data: Buffer): Buffer
}

/** A signer using an Ed25519 private key through node:crypto. */
export function ed25519Signer(privateKey: KeyObject): Signer {
  return { algorithmIdentifierDer: ED25519_ALGORITHM_ID, sign: (data) => sign(null, data, privateKey) }
}

/** AlgorithmIdentifier for ecdsa-with-SHA256: SEQUENCE { OID 1.2.840.10045.4.3.2 } — parameters absent (RFC 5758). */
export const ECDSA_SHA256_ALGORITHM_ID = Buffer.from('300a06082a8648ce3d040302', 'hex')

/**
 * A signer using an ECDSA P-256 private key (ecdsa-with-SHA256, DER-encoded Ecdsa-Sig-Value).
 * For the web PKI only: browsers refuse Ed25519 server certificates and chains.
 */
export function ecdsaP256Signer(privateKey: KeyObject): Signer {
  const details = privateKey.asymmetricKeyDetails
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'prime256v1') {
    throw new PswError('PSW_ERR_KEY_INVALID', 'expected an ECDSA P-256 private key')
  }
  return {
    algorithmIdentifierDer: ECDSA_SHA256_ALGORITHM_ID,
    sign: (data) => sign('sha256', data, { key: privateKey, dsaEncoding: 'der' }),
  }
}

export interface ExtensionsSpec {
  /** Omitted → no basicConstraints extension at all. Written as critical. */
  basicConstraints?: { ca: boolean; pathLen?: number }
  /** Written as critical. */
  keyUsage?: { digitalSignature?: boolean; keyCertSign?: boolean; cRLSign?: boolean }
  extKeyUsage?: { serverAuth?: boolean; clientAuth?: boolean }
  /** Default: derived from the public key (see keys.ts `subjectKeyIdentifier`). `null` → omitted. */
  subjectKeyId?: Buffer | null
  /** keyIdentifier of the issuer's key; omitted → no authorityKeyIdentifier. */
  authorityKeyId?: Buffer
  /** `ip`: IPv4 or IPv6 addresses in text form (SAN iPAddress, 4 or 16 bytes). */
  altNames?: { dns?: string[]; uri?: string[]; ip?: string[] }
}

export interface CertificateSpec {
  /** Default: 16 random bytes, positive, no leading zero byte. */
  serialNumber?: Buffer
  subjectCommonName: string
  /** Exact DER of the issuer's subject Name; omitted → self-issued (issuer = subject). */
  issuerNameDer?: Buffer
  publicKey: KeyObject
  notBefore: Date
  notAfter: Date
  extensions: ExtensionsSpec
  signer: Signer
}

/** 16 random bytes with the top bit clear (positive) and non-zero top byte (minimal DER INTEGER). */
export function randomSerial(): Buffer {
  const serial = randomBytes(16)
  serial[0] = (serial[0]! & 0x7f) | 0x40
  return serial
}

/** Writes a certificate and returns it as PEM. */
export function writeCertificate(spec: CertificateSpec): string {
  const cert = forge.pki.createCertificate()
  cert.publicKey = dummyRsaPublicKey()
  cert.serialNumber = (spec.serialNumber ?? randomSerial()).toString('hex')
  cert.validity.notBefore = spec.notBefore
  cert.validity.notAfter = spec.notAfter
  const name = commonName(spec.subjectCommonName)
  cert.setSubject(name)
  cert.setIssuer(name)
  cert.setExtensions(forgeExtensions(spec.extensions, spec.publicKey))
  cert.siginfo.algorithmOid = forge.pki.oids['sha256WithRSAEncryption']! // replaced below

  const tbs = (
    forge.pki as unknown as { getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1 }
  ).getTBSCertificate(cert)
  // TBSCertificate: [0] version, serial, signature, issuer, validity, subject, SPKI, [3] extensions
  const fields = tbs.value as forge.asn1.Asn1[]
  fields[2] = fromDer(spec.signer.algorithmIdentifierDer)
  if (spec.issuerNameDer) fields[3] = fromDer(spec.issuerNameDer)
  fields[6] = fromDer(spkiDer(spec.publicKey))
  return encodePem('CERTIFICATE', signed(toDer(tbs), spec.signer))
}

/** Writes a PKCS#10 certification request (subject CN only, no attributes) and returns it as PEM. */
export function writeCsr(spec: { subjectCommonName: string; publicKey: KeyObject; signer: Signer }): string {
  const csr = forge.pki.createCertificationRequest()
  csr.publicKey = dummyRsaPublicKey()
  csr.setSubject(commonName(spec.subjectCommonName))
  const cri = (
    forge.pki as unknown as { getCertificationRequestInfo(c: unknown): forge.asn1.Asn1 }
  ).getCertificationRequestInfo(csr)
  // CertificationRequestInfo: version, subject, SPKI, [0] attributes
  ;(cri.value as forge.asn1.Asn1[])[2] = fromDer(spkiDer(spec.publicKey))
  return encodePem('CERTIFICATE REQUEST', signed(toDer(cri), spec.signer))
}

/** SEQUENCE { tbs, algorithm, BIT STRING signature } — the signed bytes are embedded verbatim. */
function signed(tbsDer: Buffer, signer: Signer): Buffer {
  const signature = signer.sign(tbsDer)
  const bitString = tlv(0x03, Buffer.concat([Buffer.from([0]), signature]))
  return tlv(0x30, Buffer.concat([tbsDer, signer.algorithmIdentifierDer, bitString]))
}

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length
  let header: number[]
  if (n < 0x80) header = [tag, n]
  else if (n < 0x100) header = [tag, 0x81, n]
  else if (n < 0x10000) header = [tag, 0x82, n >> 8, n & 0xff]
  else header = [tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]
  return Buffer.concat([Buffer.from(header), content])
}

function commonName(value: string): forge.pki.CertificateField[] {
  // UTF8String (forge defaults to PrintableString, which cannot hold every character).
  return [{ name: 'commonName', value, valueTagClass: asn1.Type.UTF8 as unknown as forge.asn1.Class }]
}

function forgeExtensions(spec: ExtensionsSpec, publicKey: KeyObject): object[] {
  // Key identifiers are always given explicitly: forge would hash its dummy RSA key otherwise.
  const out: object[] = []
  if (spec.basicConstraints) {
    const { ca, pathLen } = spec.basicConstraints
    out.push({
      name: 'basicConstraints',
      critical: true,
      cA: ca,
      ...(pathLen === undefined ? {} : { pathLenConstraint: pathLen }),
    })
  }
  if (spec.keyUsage) out.push({ name: 'keyUsage', critical: true, ...spec.keyUsage })
  if (spec.extKeyUsage) out.push({ name: 'extKeyUsage', ...spec.extKeyUsage })
  const ski = spec.subjectKeyId === undefined ? subjectKeyIdentifier(publicKey) : spec.subjectKeyId
  if (ski) {
    out.push({
      name: 'subjectKeyIdentifier',
      value: asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, ski.toString('binary')),
    })
  }
  if (spec.authorityKeyId) {
    out.push({ name: 'authorityKeyIdentifier', keyIdentifier: spec.authorityKeyId.toString('binary') })
  }
  const altNames = [
    ...(spec.altNames?.dns ?? []).map((value) => ({ type: 2, value })),
    ...(spec.altNames?.uri ?? []).map((value) => ({ type: 6, value })),
    ...(spec.altNames?.ip ?? []).map((ip) => ({ type: 7, ip: checkIp(ip) })),
  ]
  if (altNames.length > 0) out.push({ name: 'subjectAltName', altNames })
  return out
}

/** forge encodes the text form itself; refuse anything that is not a plain IPv4/IPv6 address (no zone id). */
function checkIp(ip: string): string {
  if (isIP(ip) === 0 || ip.includes('%')) throw new PswError('PSW_ERR_INVALID_ARGUMENT', `not an IP address: ${ip}`)
  return ip
}

/** A placeholder RSA key (n = e = 3) so forge can emit a TBS; its SPKI node is replaced. */
function dummyRsaPublicKey(): forge.pki.rsa.PublicKey {
  const three = new forge.jsbn.BigInteger('3', 10)
  return forge.pki.setRsaPublicKey(three, three)
}

/** Parses DER into a forge node without decoding BIT STRING contents, and checks it re-encodes exactly. */
function fromDer(der: Buffer): forge.asn1.Asn1 {
  const binary = der.toString('binary')
  const node = (asn1.fromDer as unknown as (b: string, o: object) => forge.asn1.Asn1)(binary, {
    strict: true,
    parseAllBytes: true,
    decodeBitStrings: false,
  })
  if (asn1.toDer(node).getBytes() !== binary) {
    throw new PswError('PSW_ERR_INTERNAL', 'forge does not re-encode this DER exactly')
  }
  return node
}

function toDer(node: forge.asn1.Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary')
}
