import { execFileSync } from 'node:child_process'
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { NOT_BEFORE_BACKDATE_MS } from './cert-builder.ts'
import { certificateValidity } from './cert-verify.ts'
import { codeOf, DAY, NOW } from './test-fixtures.ts'
import {
  checkServerCertificate,
  createWebCa,
  fingerprint256,
  generateWebKey,
  issueWebServerCert,
  subjectAltNames,
} from './web-cert.ts'
import { readBasicConstraints, readKeyUsage, readSubjectKeyId } from './x509-fields.ts'
import { ECDSA_SHA256_ALGORITHM_ID, ecdsaP256Signer, ed25519Signer, writeCertificate } from './x509-writer.ts'

function newWebCa(now = NOW, validDays?: number) {
  const keys = generateWebKey()
  return {
    ...keys,
    certPem: createWebCa({ commonName: 'patchswarm web CA (test)', privateKeyPem: keys.privateKeyPem, now, validDays }),
  }
}

function newServer(ca: ReturnType<typeof newWebCa>, now = NOW, validDays?: number) {
  const keys = generateWebKey()
  const certPem = issueWebServerCert({
    ca: { certPem: ca.certPem, privateKeyPem: ca.privateKeyPem },
    publicKey: keys.publicKeyPem,
    commonName: 'branch-42',
    dnsNames: ['localhost', 'Branch-42', 'branch-42.local'],
    ipAddresses: ['127.0.0.1', '::1', '192.0.2.7'],
    now,
    validDays,
  })
  return { ...keys, certPem }
}

function opensslAvailable(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

describe('web CA (ECDSA P-256)', () => {
  it('is a self-signed ecdsa-with-SHA256 CA with pathLen 0, keyCertSign + cRLSign, 10 years', () => {
    const ca = newWebCa()
    const x = new X509Certificate(ca.certPem)
    expect(x.ca).toBe(true)
    expect(x.publicKey.asymmetricKeyType).toBe('ec')
    expect(x.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(x.verify(x.publicKey)).toBe(true)
    expect(x.checkIssued(x)).toBe(true)
    expect(readBasicConstraints(x.raw)).toEqual({ ca: true, pathLen: 0 })
    expect([...(readKeyUsage(x.raw) ?? [])].sort()).toEqual([5, 6])
    // The signature AlgorithmIdentifier is in the TBS and in the outer structure.
    expect(x.raw.indexOf(ECDSA_SHA256_ALGORITHM_ID)).toBeGreaterThan(0)
    expect(x.raw.lastIndexOf(ECDSA_SHA256_ALGORITHM_ID)).toBeGreaterThan(x.raw.indexOf(ECDSA_SHA256_ALGORITHM_ID))
    const { notBefore, notAfter } = certificateValidity(x)
    expect(notBefore).toBe(NOW - NOT_BEFORE_BACKDATE_MS)
    expect(notAfter).toBe(NOW + 3650 * DAY)
    expect(fingerprint256(ca.certPem)).toBe(x.fingerprint256)
  })

  it('refuses keys that are not ECDSA P-256', () => {
    const ed = generateKeyPairSync('ed25519').privateKey
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey
    expect(codeOf(() => createWebCa({ commonName: 'x', privateKeyPem: ed, now: NOW }))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => createWebCa({ commonName: 'x', privateKeyPem: p384, now: NOW }))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => ecdsaP256Signer(ed))).toBe('PSW_ERR_KEY_INVALID')
  })
})

describe('web server certificate', () => {
  it('chains to the web CA and carries serverAuth, DNS and IP SANs (node:crypto checks)', () => {
    const ca = newWebCa()
    const server = newServer(ca)
    const caX = new X509Certificate(ca.certPem)
    const x = new X509Certificate(server.certPem)
    expect(x.verify(caX.publicKey)).toBe(true)
    expect(x.checkIssued(caX)).toBe(true)
    expect(x.ca).toBe(false)
    expect(x.issuer).toBe(caX.subject)
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1'])
    expect([...(readKeyUsage(x.raw) ?? [])]).toEqual([0])
    expect(readBasicConstraints(x.raw)).toEqual({ ca: false, pathLen: undefined })
    expect(x.checkHost('localhost')).toBe('localhost')
    expect(x.checkHost('branch-42.local')).toBe('branch-42.local')
    expect(x.checkHost('BRANCH-42')).toBe('branch-42')
    expect(x.checkHost('other.example')).toBeUndefined()
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1')
    expect(x.checkIP('::1')).toBe('::1')
    expect(x.checkIP('192.0.2.7')).toBe('192.0.2.7')
    expect(x.checkIP('192.0.2.8')).toBeUndefined()
    expect(subjectAltNames(x)).toEqual({
      dns: ['localhost', 'branch-42', 'branch-42.local'],
      ip: ['127.0.0.1', '::1', '192.0.2.7'],
    })
    // authorityKeyIdentifier = the CA's subjectKeyIdentifier
    expect(x.raw.includes(readSubjectKeyId(caX.raw)!)).toBe(true)
    expect(certificateValidity(x).notAfter).toBe(NOW + 397 * DAY)
  })

  it('is never valid beyond its CA', () => {
    const ca = newWebCa(NOW, 100)
    const x = new X509Certificate(newServer(ca).certPem)
    expect(certificateValidity(x).notAfter).toBe(NOW + 100 * DAY)
  })

  it('passes openssl verify -purpose sslserver -x509_strict', (ctx) => {
    if (!opensslAvailable()) return ctx.skip()
    const now = Date.now()
    const ca = newWebCa(now)
    const server = newServer(ca, now)
    const dir = mkdtempSync(join(tmpdir(), 'psw-webcert-'))
    try {
      writeFileSync(join(dir, 'ca.pem'), ca.certPem)
      writeFileSync(join(dir, 'server.pem'), server.certPem)
      const out = execFileSync(
        'openssl',
        ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', join(dir, 'ca.pem'), join(dir, 'server.pem')],
        { encoding: 'utf8' },
      )
      expect(out.trim()).toBe(`${join(dir, 'server.pem')}: OK`)
      const text = execFileSync('openssl', ['x509', '-in', join(dir, 'server.pem'), '-noout', '-text'], {
        encoding: 'utf8',
      })
      expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256')
      expect(text).toContain('IP Address:127.0.0.1')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('refuses bad names, no names, a wrong CA key and an expired CA', () => {
    const ca = newWebCa()
    const other = newWebCa()
    const keys = generateWebKey()
    const base = { ca, publicKey: keys.publicKeyPem, commonName: 'x', dnsNames: ['x'], ipAddresses: [], now: NOW }
    expect(codeOf(() => issueWebServerCert({ ...base, dnsNames: ['bad name'] }))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => issueWebServerCert({ ...base, ipAddresses: ['fe80::1%eth0'] }))).toBe(
      'PSW_ERR_INVALID_ARGUMENT',
    )
    expect(codeOf(() => issueWebServerCert({ ...base, dnsNames: [] }))).toBe('PSW_ERR_INVALID_ARGUMENT')
    expect(codeOf(() => issueWebServerCert({ ...base, ca: { ...ca, privateKeyPem: other.privateKeyPem } }))).toBe(
      'PSW_ERR_KEY_INVALID',
    )
    expect(codeOf(() => issueWebServerCert({ ...base, now: NOW + 3651 * DAY }))).toBe('PSW_ERR_CERT_EXPIRED')
  })
})

describe('checkServerCertificate (cert import)', () => {
  const ca = newWebCa()
  const server = newServer(ca)

  it('accepts a matching pair, with or without its chain', () => {
    expect(
      checkServerCertificate({ certPem: server.certPem, keyPem: server.privateKeyPem, now: NOW }).chain,
    ).toHaveLength(1)
    const withChain = `${server.certPem}${ca.certPem}`
    expect(checkServerCertificate({ certPem: withChain, keyPem: server.privateKeyPem, now: NOW }).chain).toHaveLength(2)
  })

  it('refuses a key of another certificate', () => {
    expect(codeOf(() => checkServerCertificate({ certPem: server.certPem, keyPem: ca.privateKeyPem, now: NOW }))).toBe(
      'PSW_ERR_KEY_INVALID',
    )
    expect(codeOf(() => checkServerCertificate({ certPem: server.certPem, keyPem: 'nonsense', now: NOW }))).toBe(
      'PSW_ERR_KEY_INVALID',
    )
  })

  it('refuses an expired or not yet valid certificate', () => {
    const pair = { certPem: server.certPem, keyPem: server.privateKeyPem }
    expect(codeOf(() => checkServerCertificate({ ...pair, now: NOW + 398 * DAY }))).toBe('PSW_ERR_CERT_EXPIRED')
    expect(codeOf(() => checkServerCertificate({ ...pair, now: NOW - DAY }))).toBe('PSW_ERR_CERT_EXPIRED')
  })

  it('refuses a CA, a clientAuth-only certificate and a broken chain', () => {
    expect(codeOf(() => checkServerCertificate({ certPem: ca.certPem, keyPem: ca.privateKeyPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_USAGE',
    )
    const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const clientOnly = writeCertificate({
      subjectCommonName: 'client',
      publicKey: keys.publicKey,
      notBefore: new Date(NOW - DAY),
      notAfter: new Date(NOW + DAY),
      extensions: { basicConstraints: { ca: false }, extKeyUsage: { clientAuth: true } },
      signer: ecdsaP256Signer(keys.privateKey),
    })
    const keyPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(codeOf(() => checkServerCertificate({ certPem: clientOnly, keyPem, now: NOW }))).toBe('PSW_ERR_CERT_USAGE')
    const wrongChain = `${server.certPem}${newWebCa().certPem}`
    expect(codeOf(() => checkServerCertificate({ certPem: wrongChain, keyPem: server.privateKeyPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_CHAIN',
    )
  })

  it('refuses an Ed25519 certificate (browsers do not accept one)', () => {
    const keys = generateKeyPairSync('ed25519')
    const certPem = writeCertificate({
      subjectCommonName: 'ed',
      publicKey: createPublicKey(keys.privateKey),
      notBefore: new Date(NOW - DAY),
      notAfter: new Date(NOW + DAY),
      extensions: { basicConstraints: { ca: false } },
      signer: ed25519Signer(keys.privateKey),
    })
    const keyPem = keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(codeOf(() => checkServerCertificate({ certPem, keyPem, now: NOW }))).toBe('PSW_ERR_KEY_INVALID')
  })
})
