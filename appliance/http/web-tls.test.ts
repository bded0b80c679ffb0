import { X509Certificate } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createWebCa, generateWebKey, issueWebServerCert } from '../../shared/pki/web-cert.ts'
import { type ApplianceLayout, applianceLayout } from '../data-dir.ts'
import {
  currentWebNames,
  ensureWebCertificates,
  forgetImportedCertificate,
  importWebCertificate,
  readWebCertificates,
} from './web-tls.ts'

const DAY = 86_400_000
const NOW = Date.UTC(2026, 10, 24)
const names = { hostnames: ['localhost', 'branch-42', 'branch-42.local'], addresses: ['127.0.0.1', '::1', '192.0.2.7'] }

let dir: string
let layout: ApplianceLayout
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'psw-webtls-'))
  layout = applianceLayout(dir)
})
afterEach(() => rm(dir, { recursive: true, force: true }))

/** An operator's own CA and server certificate, as `cert import` gets them. */
function operatorCertificate(now = NOW, validDays = 90) {
  const caKeys = generateWebKey()
  const caPem = createWebCa({ commonName: 'Example Corp CA', privateKeyPem: caKeys.privateKeyPem, now })
  const keys = generateWebKey()
  const certPem = issueWebServerCert({
    ca: { certPem: caPem, privateKeyPem: caKeys.privateKeyPem },
    publicKey: keys.publicKeyPem,
    commonName: 'patch.example.com',
    dnsNames: ['patch.example.com'],
    ipAddresses: [],
    now,
    validDays,
  })
  return { caPem, certPem, keyPem: keys.privateKeyPem }
}

describe('ensureWebCertificates', () => {
  it('creates the web CA and a server certificate on first start, keys 0600, then keeps them', async () => {
    const first = await ensureWebCertificates(layout, { ...names, now: NOW, siteName: 'branch 42' })
    expect(first.action).toBe('created')
    expect(first.imported).toBe(false)
    for (const key of [layout.web.caKey, layout.web.serverKey]) expect(statSync(key).mode & 0o777).toBe(0o600)
    const ca = new X509Certificate(await readFile(layout.web.caCert))
    const server = new X509Certificate(await readFile(layout.web.serverCert))
    expect(ca.subject).toBe('CN=patchswarm web CA (branch 42)')
    expect(server.verify(ca.publicKey)).toBe(true)
    expect(server.checkIP('192.0.2.7')).toBe('192.0.2.7')
    expect(server.checkHost('branch-42.local')).toBe('branch-42.local')
    expect(first.caFingerprint256).toBe(ca.fingerprint256)
    expect(first.serverFingerprint256).toBe(server.fingerprint256)
    expect(first.caPem).toBe(await readFile(layout.web.caCert, 'utf8'))
    expect(first.notAfter).toBe(new Date(NOW + 397 * DAY).toISOString())

    const again = await ensureWebCertificates(layout, { ...names, now: NOW + 300 * DAY })
    expect(again.action).toBe('kept')
    expect(again.serverFingerprint256).toBe(first.serverFingerprint256)
  })

  it('re-issues the server certificate from the same CA within 30 days of expiry', async () => {
    const first = await ensureWebCertificates(layout, { ...names, now: NOW })
    const later = NOW + 370 * DAY
    const renewed = await ensureWebCertificates(layout, { ...names, now: later })
    expect(renewed.action).toBe('reissued')
    expect(renewed.reason).toMatch(/^expires /)
    expect(renewed.caFingerprint256).toBe(first.caFingerprint256)
    expect(renewed.serverFingerprint256).not.toBe(first.serverFingerprint256)
    expect(renewed.notAfter).toBe(new Date(later + 397 * DAY).toISOString())
  })

  it('re-issues when the host name or an address is new, and on request', async () => {
    const first = await ensureWebCertificates(layout, { ...names, now: NOW })
    const moved = await ensureWebCertificates(layout, { ...names, addresses: ['127.0.0.1', '198.51.100.9'], now: NOW })
    expect(moved.action).toBe('reissued')
    expect(moved.reason).toBe('new names: 198.51.100.9')
    expect(moved.ipAddresses).toEqual(['127.0.0.1', '198.51.100.9'])
    const renamed = await ensureWebCertificates(layout, { ...names, hostnames: ['localhost', 'branch-43'], now: NOW })
    expect(renamed.reason).toBe('new names: branch-43, ::1, 192.0.2.7')
    const renewed = await ensureWebCertificates(layout, { ...names, now: NOW, renew: true })
    expect(renewed.action).toBe('reissued')
    expect(renewed.caFingerprint256).toBe(first.caFingerprint256)
  })

  it('replaces a server certificate that does not match its key or its CA', async () => {
    await ensureWebCertificates(layout, { ...names, now: NOW })
    await writeFile(layout.web.serverKey, generateWebKey().privateKeyPem)
    expect((await ensureWebCertificates(layout, { ...names, now: NOW })).reason).toMatch(/does not belong/)
    const other = operatorCertificate()
    await writeFile(layout.web.serverCert, other.certPem)
    await writeFile(layout.web.serverKey, other.keyPem)
    expect((await ensureWebCertificates(layout, { ...names, now: NOW })).reason).toBe(
      'the server certificate is not issued by the web CA',
    )
  })

  it('creates a new CA (with a warning) when the CA key is lost', async () => {
    const first = await ensureWebCertificates(layout, { ...names, now: NOW })
    await rm(layout.web.caKey)
    const next = await ensureWebCertificates(layout, { ...names, now: NOW })
    expect(next.action).toBe('created')
    expect(next.caFingerprint256).not.toBe(first.caFingerprint256)
    expect(next.warnings.join()).toMatch(/new web CA/)
  })

  it('uses this machine’s names by default', async () => {
    const current = currentWebNames()
    expect(current.hostnames).toContain('localhost')
    expect(current.addresses).toEqual(expect.arrayContaining(['127.0.0.1', '::1']))
    const web = await ensureWebCertificates(layout, { now: Date.now() })
    const x = new X509Certificate(web.cert)
    for (const h of current.hostnames) expect(x.checkHost(h)).toBe(h)
    for (const a of current.addresses) expect(x.checkIP(a)).toBeDefined()
  })
})

describe('imported certificates', () => {
  it('are served as imported and never replaced automatically, only warned about near expiry', async () => {
    await ensureWebCertificates(layout, { ...names, now: NOW })
    const own = operatorCertificate(NOW, 90)
    const imported = await importWebCertificate(layout, {
      certPem: `${own.certPem}${own.caPem}`,
      keyPem: own.keyPem,
      now: NOW,
    })
    expect(imported.imported).toBe(true)
    expect(existsSync(layout.web.imported)).toBe(true)
    expect(imported.caPem).toBe(new X509Certificate(own.caPem).toString())
    expect(imported.dnsNames).toEqual(['patch.example.com'])

    // New addresses and near expiry: kept, with a warning.
    const later = await ensureWebCertificates(layout, { ...names, addresses: ['203.0.113.1'], now: NOW + 80 * DAY })
    expect(later.imported).toBe(true)
    expect(later.action).toBe('kept')
    expect(later.serverFingerprint256).toBe(imported.serverFingerprint256)
    expect(later.warnings.join()).toMatch(/imported server certificate expires/)
    expect(await readFile(layout.web.serverCert, 'utf8')).toBe(`${own.certPem}${own.caPem}`)

    // `cert renew` refuses to replace it; --own-ca forgets it.
    await expect(ensureWebCertificates(layout, { ...names, now: NOW, renew: true })).rejects.toMatchObject({
      code: 'PSW_ERR_CONFLICT',
    })
    await forgetImportedCertificate(layout)
    const back = await ensureWebCertificates(layout, { ...names, now: NOW, renew: true })
    expect(back.imported).toBe(false)
    expect(back.dnsNames).toEqual(names.hostnames)
  })

  it('without its CA: no CA to serve', async () => {
    const own = operatorCertificate()
    const imported = await importWebCertificate(layout, { certPem: own.certPem, keyPem: own.keyPem, now: NOW })
    expect(imported.caPem).toBeNull()
    expect(imported.caFingerprint256).toBeNull()
  })

  it('an expired import is not served: the appliance falls back to its own certificate and says why', async () => {
    const own = operatorCertificate(NOW, 10)
    await importWebCertificate(layout, { certPem: own.certPem, keyPem: own.keyPem, now: NOW })
    const web = await ensureWebCertificates(layout, { ...names, now: NOW + 20 * DAY })
    expect(web.imported).toBe(false)
    expect(web.warnings.join()).toMatch(/imported server certificate cannot be used/)
    // The operator's files are left in place: nothing was replaced.
    expect(existsSync(layout.web.imported)).toBe(true)
  })

  it('refuses a mismatched key, an expired certificate, and a CA', async () => {
    const own = operatorCertificate()
    const other = operatorCertificate()
    await expect(
      importWebCertificate(layout, { certPem: own.certPem, keyPem: other.keyPem, now: NOW }),
    ).rejects.toMatchObject({ code: 'PSW_ERR_KEY_INVALID' })
    await expect(
      importWebCertificate(layout, { certPem: own.certPem, keyPem: own.keyPem, now: NOW + 100 * DAY }),
    ).rejects.toMatchObject({ code: 'PSW_ERR_CERT_EXPIRED' })
    expect(existsSync(layout.web.imported)).toBe(false)
  })

  it('readWebCertificates: not found before the first start', async () => {
    await expect(readWebCertificates(layout, NOW)).rejects.toMatchObject({ code: 'PSW_ERR_NOT_FOUND' })
    await ensureWebCertificates(layout, { ...names, now: NOW })
    expect((await readWebCertificates(layout, NOW)).dnsNames).toEqual(names.hostnames)
  })
})
