/**
 * The web PKI: what browsers talk to on the appliance's HTTPS listener. Separate from the site
 * PKI (cert-builder.ts) because browsers refuse Ed25519 server keys and Ed25519-signed chains:
 *
 *   web CA (ECDSA P-256, self-signed, CA:true pathLen 0, keyCertSign+cRLSign, 10 years)
 *   └── server certificate (ECDSA P-256, CA:false, digitalSignature, EKU serverAuth,
 *       SAN DNS names + IP addresses, 397 days — the CA/Browser Forum's maximum)
 *
 * Written with x509-writer.ts (forge structure, node:crypto signatures); checked with
 * node:crypto only. The site root never signs anything here and nothing here is trusted by
 * agents.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  type X509Certificate,
} from 'node:crypto'
import { isIP } from 'node:net'
import { TrustError, ValidationError } from '../errors.ts'
import { NOT_BEFORE_BACKDATE_MS } from './cert-builder.ts'
import { certificateValidity, parseCertificatePem } from './cert-verify.ts'
import { samePublicKey, subjectKeyIdentifier } from './keys.ts'
import { readKeyUsage, readSubjectKeyId, subjectNameDer } from './x509-fields.ts'
import { ecdsaP256Signer, writeCertificate } from './x509-writer.ts'

const DAY_MS = 86_400_000
export const WEB_CA_VALID_DAYS = 3650
export const WEB_SERVER_VALID_DAYS = 397
const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
const OID_ANY_EKU = '2.5.29.37.0'

/** A fresh ECDSA P-256 key pair as PEM (PKCS#8 private, SPKI public). */
export function generateWebKey(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}

function ecPrivateKey(input: string | KeyObject): KeyObject {
  let key: KeyObject
  try {
    key = input instanceof KeyObject ? input : createPrivateKey({ key: input, format: 'pem' })
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'private key cannot be parsed', { cause: err })
  }
  if (
    key.type !== 'private' ||
    key.asymmetricKeyType !== 'ec' ||
    key.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
  ) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'expected an ECDSA P-256 private key')
  }
  return key
}

export interface CreateWebCaOptions {
  commonName: string
  privateKeyPem: string | KeyObject
  /** Default 3650. */
  validDays?: number
  /** Milliseconds since the epoch. */
  now: number
}

/** A self-signed ECDSA P-256 web CA (PEM): CA:true pathLen 0, keyCertSign + cRLSign. */
export function createWebCa(options: CreateWebCaOptions): string {
  const privateKey = ecPrivateKey(options.privateKeyPem)
  const publicKey = createPublicKey(privateKey)
  const ski = subjectKeyIdentifier(publicKey)
  return writeCertificate({
    subjectCommonName: checkName(options.commonName),
    publicKey,
    ...validity(options.now, options.validDays ?? WEB_CA_VALID_DAYS, Number.POSITIVE_INFINITY),
    extensions: {
      basicConstraints: { ca: true, pathLen: 0 },
      keyUsage: { keyCertSign: true, cRLSign: true },
      subjectKeyId: ski,
      authorityKeyId: ski,
    },
    signer: ecdsaP256Signer(privateKey),
  })
}

export interface IssueWebServerCertOptions {
  ca: { certPem: string; privateKeyPem: string | KeyObject }
  /** The server's public key (PEM or KeyObject); ECDSA P-256 in practice. */
  publicKey: string | KeyObject
  commonName: string
  dnsNames: string[]
  ipAddresses: string[]
  /** Default 397. Never beyond the CA's notAfter. */
  validDays?: number
  now: number
}

/** Issues the HTTPS server certificate: CA:false, digitalSignature, EKU serverAuth, SAN DNS + IP. */
export function issueWebServerCert(options: IssueWebServerCertOptions): string {
  const caCert = parseCertificatePem(options.ca.certPem)
  const caKey = ecPrivateKey(options.ca.privateKeyPem)
  if (!caCert.ca) throw new TrustError('PSW_ERR_CERT_NOT_CA', 'the web CA certificate is not a CA')
  if (!samePublicKey(createPublicKey(caKey), caCert.publicKey)) {
    throw new TrustError('PSW_ERR_KEY_INVALID', "the web CA private key does not match the CA's certificate")
  }
  const caValidity = certificateValidity(caCert)
  if (options.now < caValidity.notBefore || options.now > caValidity.notAfter) {
    throw new TrustError('PSW_ERR_CERT_EXPIRED', 'the web CA certificate is outside its validity period')
  }
  let publicKey: KeyObject
  try {
    publicKey =
      options.publicKey instanceof KeyObject
        ? options.publicKey.type === 'private'
          ? createPublicKey(options.publicKey)
          : options.publicKey
        : createPublicKey(options.publicKey)
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'server public key cannot be parsed', { cause: err })
  }
  const dns = unique(options.dnsNames.map((d) => d.toLowerCase()))
  for (const d of dns) if (!isDnsName(d)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `not a DNS name: ${d}`)
  const ip = unique(options.ipAddresses)
  if (dns.length + ip.length === 0) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'a server certificate needs at least one name')
  }
  return writeCertificate({
    subjectCommonName: checkName(options.commonName),
    issuerNameDer: subjectNameDer(caCert.raw),
    publicKey,
    ...validity(options.now, options.validDays ?? WEB_SERVER_VALID_DAYS, caValidity.notAfter),
    extensions: {
      basicConstraints: { ca: false },
      keyUsage: { digitalSignature: true },
      extKeyUsage: { serverAuth: true },
      authorityKeyId: readSubjectKeyId(caCert.raw) ?? subjectKeyIdentifier(caCert.publicKey),
      altNames: { dns, ip },
    },
    signer: ecdsaP256Signer(caKey),
  })
}

/** SHA-256 of the certificate's DER as colon-separated uppercase hex (what browsers show). */
export function fingerprint256(pem: string | X509Certificate): string {
  const cert = typeof pem === 'string' ? parseCertificatePem(pem) : pem
  return createHash('sha256')
    .update(cert.raw)
    .digest('hex')
    .toUpperCase()
    .replace(/(..)(?!$)/g, '$1:')
}

/** All certificates of a PEM bundle (leaf first, then its chain), parsed with node:crypto. */
export function parseCertificateChainPem(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  if (blocks.length === 0) throw new TrustError('PSW_ERR_CERT_INVALID', 'no PEM certificate found')
  if (blocks.length > 8) throw new ValidationError('PSW_ERR_TOO_LARGE', 'more than 8 certificates in the chain')
  return blocks.map((b) => parseCertificatePem(`${b}\n`))
}

/** The DNS names and IP addresses of a certificate's subjectAltName. */
export function subjectAltNames(cert: X509Certificate): { dns: string[]; ip: string[] } {
  const dns: string[] = []
  const ip: string[] = []
  // Node quotes entries with commas or special characters as JSON strings; plain names are bare.
  for (const entry of (cert.subjectAltName ?? '').split(/, (?=[A-Za-z ]+:)/)) {
    if (entry.startsWith('DNS:')) dns.push(entry.slice(4))
    else if (entry.startsWith('IP Address:')) ip.push(canonicalIp(entry.slice(11)))
  }
  return { dns, ip }
}

/**
 * Checks a server certificate (PEM, optionally followed by its chain) and its private key for
 * use on the HTTPS listener: the key matches the certificate and is ECDSA or RSA
 * (PSW_ERR_KEY_INVALID), it is
 * inside its validity period (PSW_ERR_CERT_EXPIRED), it is not a CA and allows TLS server use
 * — no EKU or one with serverAuth, keyUsage absent or with digitalSignature/keyEncipherment
 * (PSW_ERR_CERT_USAGE), and each chain certificate signs the one before (PSW_ERR_CERT_CHAIN).
 */
export function checkServerCertificate(options: { certPem: string; keyPem: string; now: number }): {
  leaf: X509Certificate
  chain: X509Certificate[]
} {
  const chain = parseCertificateChainPem(options.certPem)
  const leaf = chain[0]!
  let key: KeyObject
  try {
    key = createPrivateKey({ key: options.keyPem, format: 'pem' })
  } catch (err) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'the private key cannot be parsed (PEM, unencrypted)', { cause: err })
  }
  if (!samePublicKey(createPublicKey(key), leaf.publicKey)) {
    throw new TrustError('PSW_ERR_KEY_INVALID', 'the private key does not belong to the certificate')
  }
  const type = leaf.publicKey.asymmetricKeyType
  if (type !== 'ec' && type !== 'rsa' && type !== 'rsa-pss') {
    throw new TrustError('PSW_ERR_KEY_INVALID', `browsers do not accept ${type} server certificates; use ECDSA or RSA`)
  }
  const { notBefore, notAfter } = certificateValidity(leaf)
  if (options.now < notBefore || options.now > notAfter) {
    throw new TrustError('PSW_ERR_CERT_EXPIRED', `the certificate is valid from ${leaf.validFrom} to ${leaf.validTo}`)
  }
  if (leaf.ca) throw new TrustError('PSW_ERR_CERT_USAGE', 'a CA certificate cannot be a server certificate')
  const eku = leaf.keyUsage as string[] | undefined
  if (eku && !eku.includes(OID_SERVER_AUTH) && !eku.includes(OID_ANY_EKU)) {
    throw new TrustError('PSW_ERR_CERT_USAGE', 'the certificate does not allow TLS server use (extendedKeyUsage)')
  }
  let usage: Set<number> | undefined
  try {
    usage = readKeyUsage(leaf.raw)
  } catch (err) {
    throw new TrustError('PSW_ERR_CERT_INVALID', 'keyUsage cannot be read', { cause: err })
  }
  if (usage && !usage.has(0) && !usage.has(2)) {
    throw new TrustError('PSW_ERR_CERT_USAGE', 'the certificate does not allow TLS server use (keyUsage)')
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    let ok = false
    try {
      ok = chain[i]!.checkIssued(chain[i + 1]!) && chain[i]!.verify(chain[i + 1]!.publicKey)
    } catch {
      ok = false
    }
    if (!ok) throw new TrustError('PSW_ERR_CERT_CHAIN', `certificate ${i + 1} of the chain is not signed by the next`)
  }
  return { leaf, chain }
}

/** OpenSSL prints IPv6 SANs uncompressed (`0:0:0:0:0:0:0:1`); give the usual short form (`::1`). */
function canonicalIp(ip: string): string {
  if (isIP(ip) !== 6) return ip
  try {
    return new URL(`http://[${ip}]/`).hostname.slice(1, -1)
  } catch {
    return ip
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)]
}

/** Whether `value` is a host name a certificate can carry (letters, digits, `-`, `_`; labels of 1..63). */
export function isDnsName(value: string): boolean {
  return /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/i.test(value)
}

/** Whether `value` is an IP address (not a DNS name). */
export function isIpAddress(value: string): boolean {
  return isIP(value) !== 0
}

function validity(now: number, validDays: number, notAfterLimit: number): { notBefore: Date; notAfter: Date } {
  if (!Number.isFinite(now)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', '`now` must be a finite number')
  if (!Number.isInteger(validDays) || validDays < 1 || validDays > WEB_CA_VALID_DAYS) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `validDays must be an integer in 1..${WEB_CA_VALID_DAYS}`)
  }
  return {
    notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(Math.min(now + validDays * DAY_MS, notAfterLimit)),
  }
}

function checkName(name: string): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 64 || /\p{Cc}/u.test(name)) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'commonName must be 1..64 printable characters')
  }
  return name
}
