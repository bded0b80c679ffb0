import { X509Certificate } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { connect as http2Connect } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import { createServer as createNetServer, type Server as NetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { applianceLayout } from '../data-dir.ts'
import { createWebServers, registerCaRoute, type WebServers } from './listeners.ts'
import { ensureWebCertificates, type WebCertificates } from './web-tls.ts'

let web: WebCertificates
let dataDir: string
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'psw-listeners-'))
  web = await ensureWebCertificates(applianceLayout(dataDir), {
    hostnames: ['localhost', 'branch-42'],
    addresses: ['127.0.0.1', '::1'],
    now: Date.now(),
  })
  return () => rm(dataDir, { recursive: true, force: true })
})

const apps: FastifyInstance[] = []
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()))
})

/** A fastify app on both listeners with a few probe routes and an SSE-like stream ended at preClose. */
async function startApp(): Promise<{ app: FastifyInstance; servers: WebServers; httpsUrl: string; httpUrl: string }> {
  const servers = createWebServers(web)
  const app = Fastify({ serverFactory: servers.serverFactory })
  apps.push(app)
  const streams = new Set<{ end(): void }>()
  app.get('/who', async (request) => ({ protocol: request.protocol, httpVersion: request.raw.httpVersion }))
  app.get('/stream', (request, reply) => {
    reply.hijack()
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.write('data: hello\n\n')
    streams.add(reply.raw)
    request.raw.on('close', () => streams.delete(reply.raw))
  })
  app.addHook('preClose', async () => {
    for (const s of streams) s.end()
  })
  registerCaRoute(app, () => web.caPem)
  const listening = await servers.listen(app, {
    https: { host: '127.0.0.1', port: 0 },
    http: { host: '127.0.0.1', port: 0 },
  })
  return { app, servers, ...listening }
}

interface Got {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  peer?: { raw: Buffer; issuerCertificate?: { raw: Buffer } }
}

function get(url: string, ca?: string): Promise<Got> {
  return new Promise((resolve, reject) => {
    const isHttps = url.startsWith('https:')
    const req = (isHttps ? httpsRequest : httpRequest)(url, { ca, agent: false }, (res) => {
      const peer = isHttps ? (res.socket as TLSSocket).getPeerCertificate(true) : undefined
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        body += d
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, peer }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('HTTPS and loopback HTTP listeners', () => {
  it('serve one app over HTTPS (trusting only the web CA) and plain HTTP; request.protocol tells them apart', async () => {
    const { httpsUrl, httpUrl } = await startApp()
    expect(httpsUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    const tls = await get(`${httpsUrl}/who`, web.caPem!)
    expect(JSON.parse(tls.body)).toEqual({ protocol: 'https', httpVersion: '1.1' })
    // The chain the server presents: the server certificate, issued by the web CA.
    const leaf = new X509Certificate(tls.peer!.raw)
    const ca = new X509Certificate(web.caPem!)
    expect(leaf.fingerprint256).toBe(web.serverFingerprint256)
    expect(leaf.verify(ca.publicKey)).toBe(true)
    expect(leaf.checkIP('127.0.0.1')).toBe('127.0.0.1')
    expect(leaf.checkHost('localhost')).toBe('localhost')
    expect(new X509Certificate(tls.peer!.issuerCertificate!.raw).fingerprint256).toBe(web.caFingerprint256)

    expect(JSON.parse((await get(`${httpUrl}/who`)).body)).toEqual({ protocol: 'http', httpVersion: '1.1' })
    // Without the web CA a client refuses the certificate.
    await expect(get(`${httpsUrl}/who`)).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
  })

  it('speaks HTTP/2 on the HTTPS listener (protocol https)', async () => {
    const { httpsUrl } = await startApp()
    const session = http2Connect(httpsUrl, { ca: web.caPem! })
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ':path': '/who' })
        let text = ''
        req.setEncoding('utf8')
        req.on('data', (d: string) => {
          text += d
        })
        req.on('end', () => resolve(text))
        req.on('error', reject)
        req.end()
      })
      expect(JSON.parse(body)).toEqual({ protocol: 'https', httpVersion: '2.0' })
    } finally {
      session.close()
    }
  })

  it('serves the web CA at /ca.crt', async () => {
    const { httpsUrl, httpUrl } = await startApp()
    for (const url of [`${httpUrl}/ca.crt`, `${httpsUrl}/ca.crt`]) {
      const res = await get(url, web.caPem!)
      expect(res.status).toBe(200)
      expect(res.headers['content-type']).toBe('application/x-x509-ca-cert')
      expect(new X509Certificate(res.body).fingerprint256).toBe(web.caFingerprint256)
    }
  })

  it('close ends both listeners at once, with open streams and keep-alive connections on each', async () => {
    const { app, httpsUrl, httpUrl } = await startApp()
    const session = http2Connect(httpsUrl, { ca: web.caPem! })
    const h2stream = session.request({ ':path': '/stream' })
    await new Promise((resolve) => h2stream.once('data', resolve))
    const opened: Array<Promise<void>> = []
    for (const url of [`${httpsUrl}/stream`, `${httpUrl}/stream`]) {
      opened.push(
        new Promise((resolve, reject) => {
          const isHttps = url.startsWith('https:')
          const req = (isHttps ? httpsRequest : httpRequest)(url, { ca: web.caPem!, agent: false }, (res) =>
            res.once('data', () => resolve()),
          )
          req.on('error', reject)
          req.end()
        }),
      )
    }
    await Promise.all(opened)
    const started = performance.now()
    await app.close()
    expect(performance.now() - started).toBeLessThan(2_000)
    session.destroy()
    await expect(get(`${httpUrl}/who`)).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  it('a taken port is PSW_ERR_ADDRESS_IN_USE naming the listener and the address', async () => {
    const blocker: NetServer = createNetServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
    const port = (blocker.address() as { port: number }).port
    try {
      for (const which of ['https', 'http'] as const) {
        const servers = createWebServers(web)
        const app = Fastify({ serverFactory: servers.serverFactory })
        apps.push(app)
        const free = { host: '127.0.0.1', port: 0 }
        const taken = { host: '127.0.0.1', port }
        const err = await servers
          .listen(app, which === 'https' ? { https: taken, http: free } : { https: free, http: taken })
          .catch((e: unknown) => e)
        expect(err).toMatchObject({ code: 'PSW_ERR_ADDRESS_IN_USE' })
        expect((err as Error).message).toContain(`${which === 'https' ? 'HTTPS' : 'plain HTTP'} listener`)
        expect((err as Error).message).toContain(`127.0.0.1:${port}`)
      }
    } finally {
      blocker.close()
    }
  })

  it('setCertificate serves a new certificate to new connections', async () => {
    const { servers, httpsUrl } = await startApp()
    const renewed = await ensureWebCertificates(applianceLayout(dataDir), {
      hostnames: ['localhost'],
      addresses: ['127.0.0.1'],
      now: Date.now(),
      renew: true,
    })
    servers.setCertificate(renewed)
    const res = await get(`${httpsUrl}/who`, renewed.caPem!)
    expect(new X509Certificate(res.peer!.raw).fingerprint256).toBe(renewed.serverFingerprint256)
    expect(renewed.serverFingerprint256).not.toBe(web.serverFingerprint256)
  })
})
