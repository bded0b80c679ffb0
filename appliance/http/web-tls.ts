/**
 * The HTTPS listener's certificates, kept in `<data>/web/`:
 *
 *   ca.pem, ca.key (0600)          the appliance's own web CA (ECDSA P-256, 10 years)
 *   server.pem, server.key (0600)  the server certificate (397 days) and its key
 *   imported                       marker: server.pem/server.key were imported by the operator
 *
 * `ensureWebCertificates` runs at every start: it creates what is missing, and re-issues the
 * server certificate from the same CA when it is within 30 days of expiry, no longer matches
 * its key or CA, or lacks one of the current names (host name, addresses). An imported
 * certificate is never replaced automatically, only warned about.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { networkInterfaces, hostname as osHostname } from 'node:os'
import { StateError, TrustError } from '../../shared/errors.ts'
import { certificateValidity } from '../../shared/pki/cert-verify.ts'
import {
  checkServerCertificate,
  createWebCa,
  fingerprint256,
  generateWebKey,
  isDnsName,
  issueWebServerCert,
  parseCertificateChainPem,
  subjectAltNames,
} from '../../shared/pki/web-cert.ts'
import { writeFileDurable } from '../../shared/store/durable-file.ts'
import type { ApplianceLayout } from '../data-dir.ts'

const DAY_MS = 86_400_000
/** The server certificate is re-issued when it has fewer days left than this. */
export const RENEW_BEFORE_DAYS = 30

/** The names the server certificate must carry. */
export interface WebNames {
  /** DNS names (e.g. localhost, the host name, `<host>.local`). */
  hostnames: string[]
  /** IP addresses (e.g. 127.0.0.1, ::1, every non-internal interface address). */
  addresses: string[]
}

export interface WebCertificates {
  /** PEM of the server certificate (followed by its chain for an imported one). */
  cert: string
  /** PEM of the server certificate's private key. */
  key: string
  /** The CA that issued the server certificate: the appliance's web CA, or the top of an imported chain if it is a CA; null if unknown. */
  caPem: string | null
  /** SHA-256 of `caPem` (DER), colon-separated uppercase hex; null without `caPem`. */
  caFingerprint256: string | null
  serverFingerprint256: string
  /** ISO time the server certificate expires. */
  notAfter: string
  /** The server certificate's SANs. */
  dnsNames: string[]
  ipAddresses: string[]
  imported: boolean
  /** What this call did. */
  action: 'created' | 'reissued' | 'kept'
  /** Why the server certificate was re-issued (when it was). */
  reason?: string
  /** For the log: an imported certificate near expiry, an unusable import, a new CA. */
  warnings: string[]
  paths: { caCert: string; caKey: string; serverCert: string; serverKey: string }
}

/**
 * The names of this machine: localhost, 127.0.0.1, ::1, the host name and `<host>.local`, and
 * every non-internal interface address (IPv6 link-local ones are left out: they need a zone).
 */
export function currentWebNames(): WebNames {
  const host = osHostname().toLowerCase()
  const short = host.split('.')[0] ?? host
  const hostnames = ['localhost', host, `${short}.local`].filter((h) => isDnsName(h))
  const addresses = ['127.0.0.1', '::1']
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal || a.address.includes('%') || /^fe[89ab]/i.test(a.address)) continue
      addresses.push(a.address)
    }
  }
  return { hostnames: [...new Set(hostnames)], addresses: [...new Set(addresses)] }
}

export interface EnsureWebOptions extends Partial<WebNames> {
  /** Milliseconds since the epoch. */
  now: number
  /** Goes into the CA's common name. */
  siteName?: string
  /** Re-issue the server certificate even if it is still good (`cert renew`). */
  renew?: boolean
}

/** Creates or refreshes the web certificates (see the module comment) and returns what to serve. */
export async function ensureWebCertificates(
  layout: ApplianceLayout,
  options: EnsureWebOptions,
): Promise<WebCertificates> {
  const names = withDefaults(options)
  const web = layout.web
  await mkdir(web.dir, { recursive: true, mode: 0o700 })
  const warnings: string[] = []

  if (existsSync(web.imported)) {
    try {
      const imported = await loadImported(layout, options.now, warnings)
      if (options.renew) {
        throw new StateError(
          'PSW_ERR_CONFLICT',
          'the server certificate was imported; import a new one, or renew with --own-ca to go back to the appliance web CA',
        )
      }
      return imported
    } catch (err) {
      if (options.renew) throw err
      // Never replaced automatically: the files stay; the appliance serves its own certificate meanwhile.
      warnings.push(
        `the imported server certificate cannot be used (${(err as Error).message}); serving the appliance's own certificate until a valid one is imported`,
      )
    }
  }

  // The web CA.
  let caPem: string | undefined
  let caKey: string | undefined
  let action: WebCertificates['action'] = 'kept'
  try {
    ;[caPem, caKey] = await Promise.all([readFile(web.caCert, 'utf8'), readFile(web.caKey, 'utf8')])
    checkCa(caPem, caKey, options.now)
  } catch (err) {
    if (caPem !== undefined || caKey !== undefined || existsSync(web.caCert)) {
      warnings.push(
        `created a new web CA (${(err as Error).message}): browsers that trusted the old one must import the new one`,
      )
    }
    const k = generateWebKey()
    caKey = k.privateKeyPem
    caPem = createWebCa({
      commonName: `patchswarm web CA (${(options.siteName ?? 'appliance').slice(0, 40)})`,
      privateKeyPem: caKey,
      now: options.now,
    })
    await writeFileDurable(web.caKey, caKey, { mode: 0o600 })
    await writeFileDurable(web.caCert, caPem)
    action = 'created'
  }

  // The server certificate.
  let cert: string | undefined
  let key: string | undefined
  let reason: string | undefined = options.renew ? 'renewal requested' : undefined
  if (action === 'created') reason = 'new web CA'
  if (reason === undefined) {
    try {
      ;[cert, key] = await Promise.all([readFile(web.serverCert, 'utf8'), readFile(web.serverKey, 'utf8')])
      reason = serverCertProblem(cert, key, caPem, names, options.now)
    } catch {
      reason = 'no server certificate'
    }
  }
  if (reason !== undefined) {
    const k = generateWebKey()
    key = k.privateKeyPem
    cert = issueWebServerCert({
      ca: { certPem: caPem, privateKeyPem: caKey },
      publicKey: k.publicKeyPem,
      commonName: names.hostnames.find((h) => h !== 'localhost') ?? 'localhost',
      dnsNames: names.hostnames,
      ipAddresses: names.addresses,
      now: options.now,
    })
    await writeFileDurable(web.serverKey, key, { mode: 0o600 })
    await writeFileDurable(web.serverCert, cert)
    if (action === 'kept') action = reason === 'no server certificate' ? 'created' : 'reissued'
  }
  return describe(layout, cert!, key!, caPem, false, action, reason, warnings)
}

/**
 * Installs an operator's certificate (PEM, leaf first, optionally followed by its chain) and
 * key after {@link checkServerCertificate}; writes the `imported` marker.
 */
export async function importWebCertificate(
  layout: ApplianceLayout,
  options: { certPem: string; keyPem: string; now: number },
): Promise<WebCertificates> {
  checkServerCertificate(options)
  await mkdir(layout.web.dir, { recursive: true, mode: 0o700 })
  await writeFileDurable(layout.web.serverKey, options.keyPem, { mode: 0o600 })
  await writeFileDurable(layout.web.serverCert, options.certPem)
  await writeFileDurable(layout.web.imported, `imported ${new Date(options.now).toISOString()}\n`)
  const warnings: string[] = []
  return { ...(await loadImported(layout, options.now, warnings)), action: 'created' }
}

/** Drops the `imported` marker so the next ensure issues a certificate from the appliance's own web CA. */
export async function forgetImportedCertificate(layout: ApplianceLayout): Promise<void> {
  await rm(layout.web.imported, { force: true })
}

/** Reads the current certificates without changing anything (`cert show`); PSW_ERR_NOT_FOUND before the first start. */
export async function readWebCertificates(layout: ApplianceLayout, now: number): Promise<WebCertificates> {
  const warnings: string[] = []
  if (existsSync(layout.web.imported)) return loadImported(layout, now, warnings)
  let cert: string
  let key: string
  let caPem: string
  try {
    ;[cert, key, caPem] = await Promise.all([
      readFile(layout.web.serverCert, 'utf8'),
      readFile(layout.web.serverKey, 'utf8'),
      readFile(layout.web.caCert, 'utf8'),
    ])
  } catch (err) {
    throw new StateError(
      'PSW_ERR_NOT_FOUND',
      `no web certificates in ${layout.web.dir} yet (they are created at the first start, or by 'cert renew')`,
      { cause: err },
    )
  }
  const problem = serverCertProblem(cert, key, caPem, undefined, now)
  if (problem) warnings.push(problem)
  return describe(layout, cert, key, caPem, false, 'kept', undefined, warnings)
}

async function loadImported(layout: ApplianceLayout, now: number, warnings: string[]): Promise<WebCertificates> {
  const [cert, key] = await Promise.all([
    readFile(layout.web.serverCert, 'utf8'),
    readFile(layout.web.serverKey, 'utf8'),
  ])
  const { leaf, chain } = checkServerCertificate({ certPem: cert, keyPem: key, now })
  const { notAfter } = certificateValidity(leaf)
  if (notAfter - now < RENEW_BEFORE_DAYS * DAY_MS) {
    warnings.push(
      `the imported server certificate expires ${new Date(notAfter).toISOString()}: import a renewed one ('patchswarm appliance cert import')`,
    )
  }
  const top = chain.length > 1 ? chain[chain.length - 1]! : undefined
  const caPem = top?.ca ? top.toString() : null
  return describe(layout, cert, key, caPem, true, 'kept', undefined, warnings)
}

function describe(
  layout: ApplianceLayout,
  cert: string,
  key: string,
  caPem: string | null,
  imported: boolean,
  action: WebCertificates['action'],
  reason: string | undefined,
  warnings: string[],
): WebCertificates {
  const leaf = parseCertificateChainPem(cert)[0]!
  const san = subjectAltNames(leaf)
  return {
    cert,
    key,
    caPem,
    caFingerprint256: caPem === null ? null : fingerprint256(caPem),
    serverFingerprint256: fingerprint256(leaf),
    notAfter: new Date(certificateValidity(leaf).notAfter).toISOString(),
    dnsNames: san.dns,
    ipAddresses: san.ip,
    imported,
    action,
    ...(reason === undefined ? {} : { reason }),
    warnings,
    paths: {
      caCert: layout.web.caCert,
      caKey: layout.web.caKey,
      serverCert: layout.web.serverCert,
      serverKey: layout.web.serverKey,
    },
  }
}

function withDefaults(options: Partial<WebNames>): WebNames {
  if (options.hostnames && options.addresses) return { hostnames: options.hostnames, addresses: options.addresses }
  const current = currentWebNames()
  return { hostnames: options.hostnames ?? current.hostnames, addresses: options.addresses ?? current.addresses }
}

/** Throws when the CA cannot issue any more (bad pair, not a CA, expired or about to). */
function checkCa(caPem: string, caKey: string, now: number): void {
  const ca = parseCertificateChainPem(caPem)[0]!
  if (!ca.ca) throw new TrustError('PSW_ERR_CERT_NOT_CA', 'ca.pem is not a CA')
  checkServerCertificateKeyPair(ca, caKey)
  const { notAfter } = certificateValidity(ca)
  if (notAfter - now < RENEW_BEFORE_DAYS * DAY_MS)
    throw new TrustError('PSW_ERR_CERT_EXPIRED', 'the web CA expires soon')
}

function checkServerCertificateKeyPair(cert: X509Certificate, keyPem: string): void {
  let ok = false
  try {
    ok = cert.checkPrivateKey(createPrivateKey({ key: keyPem, format: 'pem' }))
  } catch {
    ok = false
  }
  if (!ok) throw new TrustError('PSW_ERR_KEY_INVALID', 'the key does not belong to the certificate')
}

/** Why the server certificate must be re-issued, or undefined if it is fine. `names` undefined: names are not checked. */
function serverCertProblem(
  cert: string,
  key: string,
  caPem: string,
  names: WebNames | undefined,
  now: number,
): string | undefined {
  let leaf: X509Certificate
  try {
    leaf = checkServerCertificate({ certPem: cert, keyPem: key, now }).leaf
  } catch (err) {
    return `unusable server certificate: ${(err as Error).message}`
  }
  const ca = new X509Certificate(caPem)
  let issued = false
  try {
    issued = leaf.checkIssued(ca) && leaf.verify(ca.publicKey)
  } catch {
    issued = false
  }
  if (!issued) return 'the server certificate is not issued by the web CA'
  const { notAfter } = certificateValidity(leaf)
  if (notAfter - now < RENEW_BEFORE_DAYS * DAY_MS) return `expires ${new Date(notAfter).toISOString()}`
  if (names) {
    const missing = [
      ...names.hostnames.filter((h) => leaf.checkHost(h, { wildcards: false }) === undefined),
      ...names.addresses.filter((a) => leaf.checkIP(a) === undefined),
    ]
    if (missing.length > 0) return `new names: ${missing.join(', ')}`
  }
  return undefined
}
