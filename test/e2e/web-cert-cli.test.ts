/**
 * `patchswarm appliance cert show|renew|import` on a stopped and on a running appliance, and
 * what `appliance start` prints about HTTPS.
 */
import { X509Certificate } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWebCa, generateWebKey, issueWebServerCert } from '../../shared/pki/web-cert.ts'
import { runCli, startAppliance, tempDir } from './harness.ts'

interface CertJson {
  imported: boolean
  caFingerprint256: string | null
  serverFingerprint256: string
  notAfter: string
  dnsNames: string[]
  ipAddresses: string[]
  reloadedPid?: number | null
}

/** The certificate the HTTPS listener presents (not verified: we compare fingerprints). */
function presented(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${url}/api/v1/health`, { rejectUnauthorized: false, agent: false }, (res) => {
      resolve(new X509Certificate((res.socket as TLSSocket).getPeerCertificate().raw).fingerprint256)
      res.resume()
    })
    req.on('error', reject)
    req.end()
  })
}

let dir: Awaited<ReturnType<typeof tempDir>>
beforeAll(async () => {
  dir = await tempDir('webcert')
})
afterAll(() => dir.cleanup())

describe('appliance cert (stopped appliance)', () => {
  it('show, renew, import, and the refusals', async () => {
    const data = join(dir.path, 'stopped')
    expect((await runCli(['appliance', 'init', '--data', data])).code).toBe(0)

    const none = await runCli(['appliance', 'cert', 'show', '--data', data])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain('PSW_ERR_NOT_FOUND')

    const renewed = await runCli(['appliance', 'cert', 'renew', '--data', data, '--json'])
    expect(renewed.code).toBe(0)
    const r = JSON.parse(renewed.stdout) as CertJson
    expect(r.imported).toBe(false)
    expect(r.ipAddresses).toContain('127.0.0.1')
    expect(r.dnsNames).toContain('localhost')
    expect(r.reloadedPid).toBeNull()

    const shown = await runCli(['appliance', 'cert', 'show', '--data', data])
    expect(shown.code).toBe(0)
    expect(shown.stdout).toContain(r.serverFingerprint256)
    expect(shown.stdout).toContain(r.caFingerprint256!)
    expect(shown.stdout).toContain(join(data, 'web', 'server.pem'))

    // The operator's own certificate, from their own CA.
    const now = Date.now()
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
    })
    await writeFile(join(dir.path, 'own.pem'), `${certPem}${caPem}`)
    await writeFile(join(dir.path, 'own.key'), keys.privateKeyPem)
    await writeFile(join(dir.path, 'other.key'), generateWebKey().privateKeyPem)

    const wrongKey = await runCli([
      'appliance',
      'cert',
      'import',
      '--data',
      data,
      '--cert',
      join(dir.path, 'own.pem'),
      '--key',
      join(dir.path, 'other.key'),
    ])
    expect(wrongKey.code).toBe(1)
    expect(wrongKey.stderr).toContain('PSW_ERR_KEY_INVALID')

    const notServer = await runCli([
      'appliance',
      'cert',
      'import',
      '--data',
      data,
      '--cert',
      join(data, 'web', 'ca.pem'),
      '--key',
      join(data, 'web', 'ca.key'),
    ])
    expect(notServer.code).toBe(1)
    expect(notServer.stderr).toContain('PSW_ERR_CERT_USAGE')

    const imported = await runCli([
      'appliance',
      'cert',
      'import',
      '--data',
      data,
      '--cert',
      join(dir.path, 'own.pem'),
      '--key',
      join(dir.path, 'own.key'),
    ])
    expect(imported.code).toBe(0)
    expect(imported.stdout).toContain('served from the next start')
    const afterImport = JSON.parse(
      (await runCli(['appliance', 'cert', 'show', '--data', data, '--json'])).stdout,
    ) as CertJson
    expect(afterImport).toMatchObject({ imported: true, dnsNames: ['patch.example.com'] })
    expect(afterImport.caFingerprint256).toBe(new X509Certificate(caPem).fingerprint256)

    const refused = await runCli(['appliance', 'cert', 'renew', '--data', data])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('PSW_ERR_CONFLICT')
    const back = await runCli(['appliance', 'cert', 'renew', '--own-ca', '--data', data, '--json'])
    expect(back.code).toBe(0)
    expect((JSON.parse(back.stdout) as CertJson).caFingerprint256).toBe(r.caFingerprint256)
  })

  it('init refuses plain HTTP on a LAN address', async () => {
    const res = await runCli(['appliance', 'init', '--data', join(dir.path, 'lan'), '--http-host', '0.0.0.0'])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/PSW_ERR_SCHEMA.*loopback only/)
  })
})

describe('appliance cert (running appliance)', () => {
  it('start prints the HTTPS URL and web CA fingerprint; renew is picked up at once (SIGHUP)', async () => {
    const data = join(dir.path, 'running')
    const app = await startAppliance(data)
    try {
      expect(app.info.httpsUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
      // The banner's lines follow the "running" line the harness waited for: wait for them too.
      await app.proc.waitForLine((l) => l === `  web UI        ${app.info.httpsUrl}/`, 'the web UI line')
      await app.proc.waitForLine((l) => l === `  web CA SHA256 ${app.info.webCaFingerprint256}`, 'the web CA line')
      const before = await presented(app.info.httpsUrl)

      const renewed = await runCli(['appliance', 'cert', 'renew', '--data', data, '--json'])
      expect(renewed.code).toBe(0)
      const r = JSON.parse(renewed.stdout) as CertJson
      expect(r.reloadedPid).toBe(app.proc.child.pid)
      expect(r.caFingerprint256).toBe(app.info.webCaFingerprint256)
      await app.proc.waitForLog('web certificate reloaded', (e) => e.serverFingerprint256 === r.serverFingerprint256)
      const after = await presented(app.info.httpsUrl)
      expect(after).toBe(r.serverFingerprint256)
      expect(after).not.toBe(before)
    } finally {
      await app.proc.stop()
    }
  })
})
