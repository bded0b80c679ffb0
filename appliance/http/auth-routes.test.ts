/**
 * Accounts, sessions, roles, CSRF and login limits through the real HTTP app (faults rows
 * 21–23): createHttpServer over a real core, driven with inject().
 */
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { readAdminToken } from '../data-dir.ts'
import { ingestSmallBundle, openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { CSP_DIRECTIVES } from './security-headers.ts'
import { createHttpServer } from './server.ts'

const PASSWORD = 'a long admin password'
const COOKIE = 'psw_session'

interface Login {
  cookie: string
  csrf: string
}

describe('accounts, sessions, roles and CSRF (HTTP)', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let adminToken: string

  beforeEach(async () => {
    t = await openTestAppliance()
    adminToken = await readAdminToken(t.core.layout)
    app = await createHttpServer({
      core: t.core,
      adminToken,
      status: async () => ({
        siteName: 's',
        peerId: '',
        multiaddrs: [],
        rootFingerprint: '',
        bundles: [],
        devices: [],
      }),
      startedAt: 0,
      now: () => t.clock.now(),
      log: silentLogger(),
    })
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  const expectError = (res: LightMyRequestResponse, status: number, code: string) => {
    expect(res.statusCode, res.body).toBe(status)
    expect(res.json()).toMatchObject({ code })
  }
  const cookieOf = (res: LightMyRequestResponse) => res.cookies.find((c) => c.name === COOKIE)
  const bearer = (token = adminToken) => ({ authorization: `Bearer ${token}` })
  const inject = (options: InjectOptions) => app.inject(options)

  /** The first admin through the setup API: returns its login. */
  const setUp = async (username = 'alice', password = PASSWORD): Promise<Login> => {
    const token = (await t.core.auth.setup.setupToken())!
    const res = await inject({ method: 'POST', url: '/api/v1/auth/setup', payload: { token, username, password } })
    expect(res.statusCode, res.body).toBe(201)
    return { cookie: cookieOf(res)!.value, csrf: res.json<{ csrfToken: string }>().csrfToken }
  }
  const login = (username: string, password = PASSWORD, extra: Partial<InjectOptions> = {}) =>
    inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username, password }, ...extra })
  const loginOk = async (username: string, password = PASSWORD): Promise<Login> => {
    const res = await login(username, password)
    expect(res.statusCode, res.body).toBe(200)
    return { cookie: cookieOf(res)!.value, csrf: res.json<{ csrfToken: string }>().csrfToken }
  }
  /** A request as the browser UI makes it: session cookie, CSRF header, same-origin. */
  const asUser = (s: Login, options: InjectOptions, headers: Record<string, string> = {}) =>
    inject({
      ...options,
      cookies: { [COOKIE]: s.cookie },
      headers: { 'x-csrf-token': s.csrf, 'sec-fetch-site': 'same-origin', ...headers },
    })
  const createUser = async (admin: Login, username: string, role: string) => {
    const res = await asUser(admin, {
      method: 'POST',
      url: '/api/v1/users',
      payload: { username, password: PASSWORD, role },
    })
    expect(res.statusCode, res.body).toBe(201)
  }

  describe('setup', () => {
    it('state says setup is required until the first admin exists; setup works once only', async () => {
      expect((await inject({ method: 'GET', url: '/api/v1/auth/state' })).json()).toEqual({ setupRequired: true })
      const token = (await t.core.auth.setup.setupToken())!
      expectError(
        await inject({
          method: 'POST',
          url: '/api/v1/auth/setup',
          payload: { token: 'wrong', username: 'alice', password: PASSWORD },
        }),
        401,
        'PSW_ERR_UNAUTHORIZED',
      )
      const res = await inject({
        method: 'POST',
        url: '/api/v1/auth/setup',
        payload: { token, username: 'alice', password: PASSWORD },
      })
      expect(res.statusCode, res.body).toBe(201)
      expect(res.json()).toEqual({ username: 'alice', role: 'admin', csrfToken: expect.any(String) })
      const cookie = cookieOf(res)!
      expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' })
      // logged in at once
      const session = await inject({ method: 'GET', url: '/api/v1/auth/session', cookies: { [COOKIE]: cookie.value } })
      expect(session.json()).toMatchObject({ username: 'alice', role: 'admin' })
      expect((await inject({ method: 'GET', url: '/api/v1/auth/state' })).json()).toEqual({ setupRequired: false })
      expectError(
        await inject({
          method: 'POST',
          url: '/api/v1/auth/setup',
          payload: { token, username: 'mallory', password: PASSWORD },
        }),
        409,
        'PSW_ERR_CONFLICT',
      )
      const { records } = await t.core.audit.query({ action: 'auth.setup' })
      expect(records.map((r) => r.actor)).toEqual([{ type: 'operator', id: 'alice' }])
    })

    it('a weak password or a bad user name is refused and leaves setup open', async () => {
      const token = (await t.core.auth.setup.setupToken())!
      for (const payload of [
        { token, username: 'alice', password: 'short' },
        { token, username: 'alice', password: 'alice' },
        { token, username: 'Alice!', password: PASSWORD },
      ]) {
        const res = await inject({ method: 'POST', url: '/api/v1/auth/setup', payload })
        expect(res.statusCode, res.body).toBe(400)
      }
      expect(await t.core.auth.setup.required()).toBe(true)
    })
  })

  describe('login and logout', () => {
    it('login: 200 with a session cookie; wrong password and unknown user fail alike; audited without the password', async () => {
      await setUp()
      const ok = await login('alice')
      expect(ok.statusCode).toBe(200)
      expect(ok.json()).toEqual({ username: 'alice', role: 'admin', csrfToken: expect.any(String) })
      const wrong = await login('alice', 'not the password')
      const unknown = await login('nobody', PASSWORD)
      expectError(wrong, 401, 'PSW_ERR_LOGIN_FAILED')
      expectError(unknown, 401, 'PSW_ERR_LOGIN_FAILED')
      expect(wrong.json()).toEqual(unknown.json())
      expect(cookieOf(wrong)).toBeUndefined()

      const { records } = await t.core.audit.query({ action: 'auth' })
      expect(records.map((r) => `${r.action} ${r.target.id}`)).toEqual([
        'auth.login.failed nobody',
        'auth.login.failed alice',
        'auth.login alice',
        'auth.setup alice',
      ])
      const text = JSON.stringify(records)
      expect(text).not.toContain(PASSWORD)
      expect(text).not.toContain('not the password')
    })

    it('429 after 5 failures for (address, alice); bob, and alice from another address, still log in', async () => {
      const admin = await setUp()
      await createUser(admin, 'bob', 'viewer')
      const from = (ip: string) => ({ remoteAddress: ip })
      for (let i = 0; i < 5; i++)
        expectError(await login('alice', 'wrong password', from('10.0.0.7')), 401, 'PSW_ERR_LOGIN_FAILED')
      const limited = await login('alice', PASSWORD, from('10.0.0.7'))
      expectError(limited, 429, 'PSW_ERR_RATE_LIMITED')
      expect(Number(limited.headers['retry-after'])).toBe(15 * 60)
      expect((await login('bob', PASSWORD, from('10.0.0.7'))).statusCode).toBe(200)
      expect((await login('alice', PASSWORD, from('10.0.0.8'))).statusCode).toBe(200)
      t.clock.advance(15 * 60_000)
      expect((await login('alice', PASSWORD, from('10.0.0.7'))).statusCode).toBe(200)
    })

    it('session fixation: every login issues a new id and CSRF secret and ends the session it came with', async () => {
      await setUp()
      const first = await loginOk('alice')
      const res = await login('alice', PASSWORD, { cookies: { [COOKIE]: first.cookie } })
      expect(res.statusCode).toBe(200)
      const second = { cookie: cookieOf(res)!.value, csrf: res.json<{ csrfToken: string }>().csrfToken }
      expect(second.cookie).not.toBe(first.cookie)
      expect(second.csrf).not.toBe(first.csrf)
      expectError(
        await inject({ method: 'GET', url: '/api/v1/auth/session', cookies: { [COOKIE]: first.cookie } }),
        401,
        'PSW_ERR_UNAUTHORIZED',
      )
      // A cookie the attacker planted (never issued) is not adopted either.
      const planted = 'A'.repeat(43)
      const fixed = await login('alice', PASSWORD, { cookies: { [COOKIE]: planted } })
      expect(cookieOf(fixed)!.value).not.toBe(planted)
    })

    it('logout ends the session server-side: the old cookie gets a 401 afterwards', async () => {
      await setUp()
      const s = await loginOk('alice')
      expect((await asUser(s, { method: 'GET', url: '/api/v1/users' })).statusCode).toBe(200)
      const out = await asUser(s, { method: 'POST', url: '/api/v1/auth/logout' })
      expect(out.statusCode).toBe(204)
      expect(cookieOf(out)?.value).toBe('')
      expectError(await asUser(s, { method: 'GET', url: '/api/v1/users' }), 401, 'PSW_ERR_UNAUTHORIZED')
      expectError(await asUser(s, { method: 'GET', url: '/api/v1/auth/session' }), 401, 'PSW_ERR_UNAUTHORIZED')
      const { records } = await t.core.audit.query({ action: 'auth.logout' })
      expect(records.map((r) => r.actor)).toEqual([{ type: 'operator', id: 'alice' }])
    })

    it('GET /api/v1/auth/session: user, role, CSRF token and expiry; an idle or old session is refused', async () => {
      await setUp()
      const s = await loginOk('alice')
      const res = await asUser(s, { method: 'GET', url: '/api/v1/auth/session' })
      expect(res.json()).toEqual({
        username: 'alice',
        role: 'admin',
        csrfToken: s.csrf,
        expiresAt: new Date(t.clock.now() + 30 * 60_000).toISOString(),
      })
      t.clock.advance(30 * 60_000)
      expectError(await asUser(s, { method: 'GET', url: '/api/v1/auth/session' }), 401, 'PSW_ERR_UNAUTHORIZED')
    })
  })

  describe('CSRF', () => {
    it('a cookie-authenticated write needs the x-csrf-token and a same-origin request', async () => {
      const s = await setUp()
      const body = { method: 'POST' as const, url: '/api/v1/admin/tokens', payload: {} }
      const cookies = { [COOKIE]: s.cookie }
      expectError(await inject({ ...body, cookies }), 403, 'PSW_ERR_CSRF')
      expectError(await inject({ ...body, cookies, headers: { 'x-csrf-token': 'wrong' } }), 403, 'PSW_ERR_CSRF')
      expectError(
        await inject({ ...body, cookies, headers: { 'x-csrf-token': s.csrf, 'sec-fetch-site': 'cross-site' } }),
        403,
        'PSW_ERR_CSRF',
      )
      expectError(
        await inject({ ...body, cookies, headers: { 'x-csrf-token': s.csrf, 'sec-fetch-site': 'same-site' } }),
        403,
        'PSW_ERR_CSRF',
      )
      // no Sec-Fetch-Site: the Origin must be this scheme and host
      expectError(
        await inject({
          ...body,
          cookies,
          headers: { 'x-csrf-token': s.csrf, origin: 'http://evil.example', host: 'localhost:80' },
        }),
        403,
        'PSW_ERR_CSRF',
      )
      expect(
        (
          await inject({
            ...body,
            cookies,
            headers: { 'x-csrf-token': s.csrf, origin: 'http://box:8080', host: 'box:8080' },
          })
        ).statusCode,
      ).toBe(200)
      expect((await asUser(s, body)).statusCode).toBe(200)
      // a cross-site login is refused too (login CSRF)
      expectError(await login('alice', PASSWORD, { headers: { 'sec-fetch-site': 'cross-site' } }), 403, 'PSW_ERR_CSRF')
    })

    it('bearer credentials (API token, admin token) need no CSRF token', async () => {
      const s = await setUp()
      const created = await asUser(s, {
        method: 'POST',
        url: '/api/v1/api-tokens',
        payload: { name: 'script', role: 'admin' },
      })
      const { token } = created.json<{ token: string }>()
      for (const headers of [bearer(token), bearer()]) {
        const res = await inject({ method: 'POST', url: '/api/v1/admin/tokens', payload: {}, headers })
        expect(res.statusCode, res.body).toBe(200)
      }
    })

    it('a text/plain body (what a cross-site form can send) is refused: JSON only', async () => {
      const s = await setUp()
      const res = await asUser(
        s,
        { method: 'POST', url: '/api/v1/admin/tokens', payload: '{}' },
        { 'content-type': 'text/plain' },
      )
      expect(res.statusCode).toBe(415)
      expect(res.json().code).toMatch(/^PSW_ERR_/)
    })
  })

  describe('roles', () => {
    it('viewer reads but cannot approve; operator approves but cannot manage users; every read needs a principal', async () => {
      const admin = await setUp()
      await createUser(admin, 'vera', 'viewer')
      await createUser(admin, 'otto', 'operator')
      const vera = await loginOk('vera')
      const otto = await loginOk('otto')
      const bundle = await ingestSmallBundle(t, 'tool', '1')
      const approve = {
        method: 'POST' as const,
        url: `/api/v1/patches/${bundle.bundleId}/approve`,
        payload: { group: '*' },
      }

      expect((await asUser(vera, { method: 'GET', url: '/api/v1/patches' })).statusCode).toBe(200)
      expect((await asUser(vera, { method: 'GET', url: '/api/v1/audit' })).statusCode).toBe(200)
      expectError(await asUser(vera, approve), 403, 'PSW_ERR_FORBIDDEN')
      expectError(await asUser(vera, { method: 'GET', url: '/api/v1/users' }), 403, 'PSW_ERR_FORBIDDEN')

      const approved = await asUser(otto, approve)
      expect(approved.statusCode, approved.body).toBe(200)
      // the account is the actor, not a shared token
      expect(approved.json()).toMatchObject({ by: 'operator:otto' })
      const createUserAsOtto = await asUser(otto, {
        method: 'POST',
        url: '/api/v1/users',
        payload: { username: 'eve', password: PASSWORD, role: 'admin' },
      })
      expectError(createUserAsOtto, 403, 'PSW_ERR_FORBIDDEN')
      expectError(
        await asUser(otto, { method: 'POST', url: '/api/v1/admin/tokens', payload: {} }),
        403,
        'PSW_ERR_FORBIDDEN',
      )
      expectError(await asUser(otto, { method: 'GET', url: '/api/v1/api-tokens' }), 403, 'PSW_ERR_FORBIDDEN')

      for (const remoteAddress of ['127.0.0.1', '192.168.1.9']) {
        for (const url of ['/api/v1/patches', '/api/v1/status', '/api/v1/devices', '/api/v1/audit', '/api/v1/users']) {
          expectError(await inject({ method: 'GET', url, remoteAddress }), 401, 'PSW_ERR_UNAUTHORIZED')
        }
      }
      for (const url of ['/api/v1/health', '/api/v1/auth/state', '/api/v1/openapi.json'])
        expect((await inject({ method: 'GET', url })).statusCode, url).toBe(200)
    })

    it('API tokens: admin creates (secret shown once), lists, deletes; an expired or deleted token is refused', async () => {
      let admin = await setUp()
      const created = await asUser(admin, {
        method: 'POST',
        url: '/api/v1/api-tokens',
        payload: { name: 'prometheus', role: 'viewer', expiresAt: new Date(t.clock.now() + 3_600_000).toISOString() },
      })
      expect(created.statusCode, created.body).toBe(201)
      const { token, id } = created.json<{ token: string; id: string }>()
      expect(token).toMatch(/^psw_/)
      const list = await asUser(admin, { method: 'GET', url: '/api/v1/api-tokens' })
      expect(list.json().tokens).toEqual([
        expect.objectContaining({ id, name: 'prometheus', createdBy: 'operator:alice' }),
      ])
      expect(list.body).not.toContain(token.slice(22))

      expect((await inject({ method: 'GET', url: '/api/v1/patches', headers: bearer(token) })).statusCode).toBe(200)
      expectError(
        await inject({
          method: 'POST',
          url: '/api/v1/admin/assign',
          payload: { bundle: 'x@1', devices: 'all' },
          headers: bearer(token),
        }),
        403,
        'PSW_ERR_FORBIDDEN',
      )
      t.clock.advance(3_600_000)
      expectError(
        await inject({ method: 'GET', url: '/api/v1/patches', headers: bearer(token) }),
        401,
        'PSW_ERR_UNAUTHORIZED',
      )
      // (an hour idle ended the admin's session as well)
      expectError(await asUser(admin, { method: 'GET', url: '/api/v1/api-tokens' }), 401, 'PSW_ERR_UNAUTHORIZED')
      admin = await loginOk('alice')

      const second = (
        await asUser(admin, { method: 'POST', url: '/api/v1/api-tokens', payload: { name: 'msp', role: 'operator' } })
      ).json<{ token: string; id: string }>()
      expect((await asUser(admin, { method: 'DELETE', url: `/api/v1/api-tokens/${second.id}` })).statusCode).toBe(204)
      expectError(
        await inject({ method: 'GET', url: '/api/v1/patches', headers: bearer(second.token) }),
        401,
        'PSW_ERR_UNAUTHORIZED',
      )
      const { records } = await t.core.audit.query({ action: 'api-token' })
      expect(records.map((r) => r.action)).toEqual(['api-token.delete', 'api-token.create', 'api-token.create'])
      expect(JSON.stringify(records)).not.toContain(token.slice(22))
    })

    it('users: a role change, disabling and removal end the sessions; the last admin stays', async () => {
      const admin = await setUp()
      await createUser(admin, 'bob', 'operator')
      const bob = await loginOk('bob')
      const put = (username: string, payload: object) =>
        asUser(admin, { method: 'PUT', url: `/api/v1/users/${username}`, payload })

      const demoted = await put('bob', { role: 'viewer' })
      expect(demoted.json()).toMatchObject({ username: 'bob', role: 'viewer' })
      expect(demoted.body).not.toContain('argon2')
      expectError(await asUser(bob, { method: 'GET', url: '/api/v1/patches' }), 401, 'PSW_ERR_UNAUTHORIZED')
      const bob2 = await loginOk('bob')
      expect((await put('bob', { disabled: true })).statusCode).toBe(200)
      expectError(await asUser(bob2, { method: 'GET', url: '/api/v1/patches' }), 401, 'PSW_ERR_UNAUTHORIZED')
      expectError(await login('bob'), 401, 'PSW_ERR_LOGIN_FAILED')

      expectError(await put('alice', { role: 'operator' }), 409, 'PSW_ERR_CONFLICT')
      expectError(await asUser(admin, { method: 'DELETE', url: '/api/v1/users/alice' }), 409, 'PSW_ERR_CONFLICT')
      expectError(await put('nobody', { role: 'viewer' }), 404, 'PSW_ERR_NOT_FOUND')
      expect((await asUser(admin, { method: 'DELETE', url: '/api/v1/users/bob' })).statusCode).toBe(204)
      const users = (await asUser(admin, { method: 'GET', url: '/api/v1/users' })).json<{
        users: Array<{ username: string }>
      }>()
      expect(users.users.map((u) => u.username)).toEqual(['alice'])
      const { records } = await t.core.audit.query({ action: 'user' })
      expect(records.map((r) => r.action)).toEqual(['user.delete', 'user.update', 'user.update', 'user.create'])
    })

    it('POST /api/v1/auth/password: needs the current password, ends the other sessions, keeps this one', async () => {
      await setUp()
      const here = await loginOk('alice')
      const elsewhere = await loginOk('alice')
      const change = (current: string) =>
        asUser(here, {
          method: 'POST',
          url: '/api/v1/auth/password',
          payload: { current, password: 'the new long password' },
        })
      expectError(await change('wrong password'), 403, 'PSW_ERR_FORBIDDEN')
      expect((await change(PASSWORD)).statusCode).toBe(204)
      expect((await asUser(here, { method: 'GET', url: '/api/v1/auth/session' })).statusCode).toBe(200)
      expectError(await asUser(elsewhere, { method: 'GET', url: '/api/v1/auth/session' }), 401, 'PSW_ERR_UNAUTHORIZED')
      expectError(await login('alice'), 401, 'PSW_ERR_LOGIN_FAILED')
      expect((await login('alice', 'the new long password')).statusCode).toBe(200)
    })
  })

  describe('bad input on the auth routes: 4xx with a code, never a 500 (faults row 23)', () => {
    it('malformed JSON, wrong types, unknown fields and huge bodies', async () => {
      const s = await setUp()
      const raw = (url: string, payload: string, headers: Record<string, string> = {}) =>
        inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json', ...headers } })
      const userHeaders = { 'x-csrf-token': s.csrf, 'sec-fetch-site': 'same-origin', cookie: `${COOKIE}=${s.cookie}` }
      const cases: Array<[string, string, Record<string, string>?]> = [
        ['/api/v1/auth/login', '{'],
        ['/api/v1/auth/login', '[]'],
        ['/api/v1/auth/login', 'null'],
        ['/api/v1/auth/login', '{"username":1,"password":2}'],
        ['/api/v1/auth/login', '{"username":"alice"}'],
        ['/api/v1/auth/login', `{"username":"alice","password":"${PASSWORD}","admin":true}`],
        ['/api/v1/auth/login', '{"username":"al\\u0000ice","password":"x"}'],
        ['/api/v1/auth/setup', '{"token":5}'],
        ['/api/v1/users', '{"username":"x","password":"y","role":"root"}', userHeaders],
        ['/api/v1/users', '{"username":"x"', userHeaders],
        ['/api/v1/api-tokens', '{"name":"x","role":"viewer","expiresAt":"tomorrow"}', userHeaders],
        ['/api/v1/auth/password', '{"current":[]}', userHeaders],
      ]
      for (const [url, body, headers] of cases) {
        const res = await raw(url, body, headers)
        expect(res.statusCode, `${url} ${body} → ${res.body}`).toBeGreaterThanOrEqual(400)
        expect(res.statusCode, `${url} ${body} → ${res.body}`).toBeLessThan(500)
        expect(res.json().code).toMatch(/^PSW_ERR_(SCHEMA|INVALID_ARGUMENT|CONFLICT|LOGIN_FAILED)$/)
      }
      const huge = JSON.stringify({ username: 'alice', password: 'x'.repeat(20_000) })
      expectError(await raw('/api/v1/auth/login', huge), 413, 'PSW_ERR_TOO_LARGE')
      expectError(await raw('/api/v1/users', huge, userHeaders), 413, 'PSW_ERR_TOO_LARGE')
      // none of it counted as a login failure for alice
      expect((await login('alice')).statusCode).toBe(200)
    })
  })

  describe('security headers', () => {
    it('CSP, nosniff, no-referrer, frame DENY on every response; no-store on the API; no HSTS over HTTP', async () => {
      for (const url of ['/api/v1/health', '/api/v1/nope', '/api/v1/auth/state']) {
        const res = await inject({ method: 'GET', url })
        expect(res.headers['content-security-policy']).toBe(
          "default-src 'none';script-src 'self';style-src 'self';img-src 'self' data:;connect-src 'self';font-src 'self';form-action 'self';frame-ancestors 'none';base-uri 'none'",
        )
        expect(res.headers['x-content-type-options']).toBe('nosniff')
        expect(res.headers['referrer-policy']).toBe('no-referrer')
        expect(res.headers['x-frame-options']).toBe('DENY')
        expect(res.headers['cache-control']).toBe('no-store')
        expect(res.headers['strict-transport-security']).toBeUndefined()
        expect(res.headers['content-security-policy']).not.toContain('upgrade-insecure-requests')
      }
      expect(Object.keys(CSP_DIRECTIVES)).toHaveLength(9)
    })

    it('the OpenAPI document names both security schemes and marks the public routes', async () => {
      const doc = (await inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as {
        components: { securitySchemes: Record<string, unknown> }
        paths: Record<string, Record<string, { security?: unknown[] }>>
      }
      expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['bearer', 'session'])
      expect(doc.paths['/api/v1/auth/login']!.post!.security).toEqual([])
      expect(doc.paths['/api/v1/health']!.get!.security).toEqual([])
      expect(doc.paths['/api/v1/users']!.get!.security).toBeUndefined()
    })
  })
})
