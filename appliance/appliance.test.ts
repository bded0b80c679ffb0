import { X509Certificate } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { describe, expect, it } from 'vitest'
import { systemClock } from '../shared/clock.ts'
import { silentLogger } from '../shared/log.ts'
import { createAppliance, type RunInfo } from './appliance.ts'
import { isLoopbackHost, readApplianceConfig, writeApplianceConfig } from './config.ts'
import { initApplianceDataDir } from './core.ts'

describe('appliance start', () => {
  it('reports a taken HTTP port with its own code and releases everything it opened', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'psw-app-'))
    const blocker = createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = (blocker.address() as { port: number }).port
    try {
      const dataDir = join(dir, 'data')
      await initApplianceDataDir(dataDir, { clock: systemClock })
      const opts = { dataDir, clock: systemClock, log: silentLogger() }
      const first = await createAppliance({
        ...opts,
        overrides: { httpPort: port, httpsHost: '127.0.0.1', httpsPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
      })
      await expect(first.start()).rejects.toMatchObject({ code: 'PSW_ERR_ADDRESS_IN_USE' })
      // the data directory was released: the same appliance starts on a free port
      const second = await createAppliance({
        ...opts,
        overrides: { httpPort: 0, httpsHost: '127.0.0.1', httpsPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
      })
      const info = await second.start()
      expect((await fetch(`${info.httpUrl}/api/v1/health`)).status).toBe(200)
      await second.stop()
    } finally {
      blocker.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('appliance web listeners', () => {
  it('serves HTTPS with its own web CA and plain HTTP on loopback; run.json names both', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'psw-app-'))
    try {
      const dataDir = join(dir, 'data')
      await initApplianceDataDir(dataDir, { clock: systemClock })
      const app = await createAppliance({
        dataDir,
        clock: systemClock,
        log: silentLogger(),
        overrides: { httpPort: 0, httpsHost: '127.0.0.1', httpsPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
      })
      const info = await app.start()
      try {
        expect(info.httpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
        expect(info.httpsUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
        expect(info.webUrls).toEqual([info.httpsUrl])
        const runJson = JSON.parse(await readFile(join(dataDir, 'run.json'), 'utf8')) as RunInfo
        expect(runJson).toMatchObject({ httpsUrl: info.httpsUrl, webCaFingerprint256: info.webCaFingerprint256 })
        const caPem = await readFile(join(dataDir, 'web', 'ca.pem'), 'utf8')
        const ca = new X509Certificate(caPem)
        expect(info.webCaFingerprint256).toBe(ca.fingerprint256)

        // HTTPS, trusting only the web CA: the health check, and the CA itself at /ca.crt.
        const health = await httpsGet(`${info.httpsUrl}/api/v1/health`, caPem)
        expect(health.status).toBe(200)
        expect(health.leaf.checkIP('127.0.0.1')).toBe('127.0.0.1')
        expect(health.leaf.verify(ca.publicKey)).toBe(true)
        const served = await httpsGet(`${info.httpsUrl}/ca.crt`, caPem)
        expect(served.contentType).toBe('application/x-x509-ca-cert')
        expect(new X509Certificate(served.body).fingerprint256).toBe(info.webCaFingerprint256)
        // Plain HTTP on loopback.
        expect((await fetch(`${info.httpUrl}/api/v1/health`)).status).toBe(200)
      } finally {
        await app.stop()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('refuses plain HTTP on a non-loopback host (config file and --http-host)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'psw-app-'))
    try {
      const dataDir = join(dir, 'data')
      await initApplianceDataDir(dataDir, { clock: systemClock })
      const config = await readApplianceConfig(dataDir)
      await expect(
        writeApplianceConfig(dataDir, { ...config, http: { ...config.http, host: '0.0.0.0' } }),
      ).rejects.toMatchObject({ code: 'PSW_ERR_SCHEMA', message: expect.stringMatching(/loopback only/) })
      // A hand-edited file is refused when read.
      await writeFile(
        join(dataDir, 'appliance.json'),
        JSON.stringify({ ...config, http: { ...config.http, host: '192.0.2.1' } }),
      )
      await expect(readApplianceConfig(dataDir)).rejects.toMatchObject({ code: 'PSW_ERR_SCHEMA' })
      await writeFile(join(dataDir, 'appliance.json'), JSON.stringify(config))
      const app = await createAppliance({
        dataDir,
        clock: systemClock,
        log: silentLogger(),
        overrides: { httpHost: '0.0.0.0', httpPort: 0, httpsPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
      })
      await expect(app.start()).rejects.toMatchObject({ code: 'PSW_ERR_SCHEMA' })
      for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1'])
        expect(isLoopbackHost(host)).toBe(true)
      for (const host of ['0.0.0.0', '::', '192.0.2.1', 'appliance.local', '128.0.0.1'])
        expect(isLoopbackHost(host)).toBe(false)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

function httpsGet(
  url: string,
  ca: string,
): Promise<{ status: number; contentType: string | undefined; body: string; leaf: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca, agent: false }, (res) => {
      const leaf = new X509Certificate((res.socket as TLSSocket).getPeerCertificate().raw)
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body, leaf }),
      )
    })
    req.on('error', reject)
    req.end()
  })
}
