/**
 * First-run setup through a started appliance: the setup link on stdout, setup over HTTPS
 * with the `__Host-` Secure cookie and HSTS, and no link once an account exists.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { systemClock } from '../shared/clock.ts'
import { silentLogger } from '../shared/log.ts'
import { createAppliance } from './appliance.ts'
import { initApplianceDataDir } from './core.ts'

function httpsPost(url: string, body: unknown) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>(
    (resolve, reject) => {
      const text = JSON.stringify(body)
      const req = httpsRequest(
        url,
        {
          method: 'POST',
          rejectUnauthorized: false,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
        },
        (res) => {
          let data = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => {
            data += c
          })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: data }))
        },
      )
      req.once('error', reject)
      req.end(text)
    },
  )
}

describe('appliance first-run setup', () => {
  let dir: string | undefined
  afterEach(async () => {
    vi.restoreAllMocks()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('prints a setup link while no account exists; setup over HTTPS sets a __Host- Secure cookie and HSTS', async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-setup-'))
    const dataDir = join(dir, 'data')
    await initApplianceDataDir(dataDir, { clock: systemClock })
    const options = {
      dataDir,
      clock: systemClock,
      log: silentLogger(),
      overrides: { httpPort: 0, httpsHost: '127.0.0.1', httpsPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
    }
    const printed: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: never[]) => {
      if (typeof chunk === 'string' && chunk.startsWith('setup: ')) {
        printed.push(chunk)
        return true
      }
      return write(chunk, ...rest)
    }) as typeof process.stdout.write)

    const app = await createAppliance(options)
    const info = await app.start()
    let token: string
    try {
      expect(printed).toHaveLength(1)
      const m = /^setup: (https:\/\/[^/]+)\/#\/setup\?token=([A-Za-z0-9_-]{43})\n$/.exec(printed[0]!)
      expect(m?.[1]).toBe(info.httpsUrl)
      token = m![2]!

      const res = await httpsPost(`${info.httpsUrl}/api/v1/auth/setup`, {
        token,
        username: 'alice',
        password: 'a long admin password',
      })
      expect(res.status, res.body).toBe(201)
      const cookie = String(res.headers['set-cookie'])
      expect(cookie).toMatch(/^__Host-psw_session=[A-Za-z0-9_-]{43}; /)
      for (const attribute of ['Path=/', 'HttpOnly', 'Secure', 'SameSite=Strict']) expect(cookie).toContain(attribute)
      expect(res.headers['strict-transport-security']).toMatch(/^max-age=\d+/)
      // plain HTTP (loopback): no HSTS
      const plain = await fetch(`${info.httpUrl}/api/v1/health`)
      expect(plain.headers.get('strict-transport-security')).toBeNull()
    } finally {
      await app.stop()
    }

    // set up: the next start prints no link, and the old token is worthless
    const again = await createAppliance(options)
    const info2 = await again.start()
    try {
      expect(printed).toHaveLength(1)
      const res = await httpsPost(`${info2.httpsUrl}/api/v1/auth/setup`, {
        token,
        username: 'mallory',
        password: 'a long admin password',
      })
      expect(res.status).toBe(409)
    } finally {
      await again.stop()
    }
  })
})
