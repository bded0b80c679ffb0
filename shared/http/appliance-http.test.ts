import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createWebCa, generateWebKey, issueWebServerCert } from '../pki/web-cert.ts'
import { applianceRequest, certFingerprint256, fetchPinnedWebCa } from './appliance-http.ts'

/** A real HTTPS server on 127.0.0.1:0 with a certificate from a fresh web CA. */
function webPki(name: string) {
  const now = Date.now()
  const caKey = generateWebKey()
  const caPem = createWebCa({ commonName: `${name} CA`, privateKeyPem: caKey.privateKeyPem, now })
  const key = generateWebKey()
  const certPem = issueWebServerCert({
    ca: { certPem: caPem, privateKeyPem: caKey.privateKeyPem },
    publicKey: key.publicKeyPem,
    commonName: name,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    now,
  })
  return { caPem, certPem, keyPem: key.privateKeyPem }
}

async function serve(pki: ReturnType<typeof webPki>, caToServe: string): Promise<{ server: Server; base: string }> {
  const server = createServer({ key: pki.keyPem, cert: pki.certPem }, (req, res) => {
    if (req.url === '/ca.crt') res.writeHead(200, { 'content-type': 'application/x-x509-ca-cert' }).end(caToServe)
    else if (req.url === '/api/v1/health')
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}')
    else if (req.url === '/big') res.writeHead(200).end(Buffer.alloc(300 << 10))
    else res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, base: `https://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

describe('agent HTTPS to the appliance, trusting only its pinned web CA', () => {
  const real = webPki('appliance')
  const rogue = webPki('rogue')
  let good: Awaited<ReturnType<typeof serve>>
  let mitm: Awaited<ReturnType<typeof serve>>

  beforeAll(async () => {
    good = await serve(real, real.caPem)
    // Someone else on the LAN: its own certificate, and it serves its own CA as /ca.crt.
    mitm = await serve(rogue, rogue.caPem)
  })
  afterAll(() => {
    good.server.close()
    mitm.server.close()
  })

  it('downloads the web CA when its fingerprint is the pinned one, then verifies TLS against it', async () => {
    const fp = certFingerprint256(real.caPem)
    const ca = await fetchPinnedWebCa(good.base, fp.toUpperCase().match(/../g)!.join(':'))
    expect(ca).toBe(real.caPem)
    const res = await applianceRequest(new URL('/api/v1/health', good.base), { caPem: ca })
    expect(res).toEqual({ status: 200, text: '{"status":"ok"}' })
  })

  it('refuses a /ca.crt with another fingerprint, and a server whose certificate is not from the pinned CA', async () => {
    await expect(fetchPinnedWebCa(mitm.base, certFingerprint256(real.caPem))).rejects.toMatchObject({
      code: 'PSW_ERR_ROOT_MISMATCH',
    })
    await expect(applianceRequest(new URL('/api/v1/health', mitm.base), { caPem: real.caPem })).rejects.toMatchObject({
      code: 'PSW_ERR_APPLIANCE_UNREACHABLE',
    })
    // Without a pin, the system's trust store: a private CA is not in it.
    await expect(applianceRequest(new URL('/api/v1/health', good.base))).rejects.toMatchObject({
      code: 'PSW_ERR_APPLIANCE_UNREACHABLE',
    })
  })

  it('stops reading an answer past its size limit', async () => {
    await expect(applianceRequest(new URL('/big', good.base), { caPem: real.caPem })).rejects.toMatchObject({
      code: 'PSW_ERR_TOO_LARGE',
    })
  })
})
