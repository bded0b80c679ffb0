import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { hasCode } from '../../shared/errors.ts'
import { silentLogger } from '../../shared/log.ts'
import { openStateDb, type StateDb } from '../../shared/store/state-db.ts'
import { ApiTokenStore } from './api-token-store.ts'
import { LoginThrottle } from './login-throttle.ts'
import { checkPasswordRules, PasswordHasher, Semaphore } from './password.ts'
import { SessionStore } from './session-store.ts'
import { SETUP_KEY, Setup, setupBanner } from './setup.ts'
import { UserStore } from './user-store.ts'

const PASSWORD = 'correct horse battery'
const codeOf = (err: unknown) => (err as { code?: string }).code

describe('auth stores', () => {
  let dir: string
  let db: StateDb
  let clock: ManualClock
  const hasher = new PasswordHasher()

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-auth-'))
    db = await openStateDb({ path: join(dir, 'db'), schemaVersion: 1 })
    clock = new ManualClock(Date.UTC(2026, 5, 1))
  })
  afterEach(async () => {
    await db.close()
    await rm(dir, { recursive: true, force: true })
  })

  describe('passwords', () => {
    it('hashes with argon2id (m=19456, t=2, p=1) and verifies; an unknown user is never verified', async () => {
      const stored = await hasher.hash(PASSWORD)
      expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
      expect(await hasher.verify(stored, PASSWORD)).toBe(true)
      expect(await hasher.verify(stored, `${PASSWORD}x`)).toBe(false)
      expect(await hasher.verify(undefined, PASSWORD)).toBe(false)
      expect(await hasher.verify('not a hash', PASSWORD)).toBe(false)
    })

    it('rules: 12 to 256 characters, not the user name', () => {
      expect(() => checkPasswordRules('short', 'alice')).toThrow(/12 to 256/)
      expect(() => checkPasswordRules('x'.repeat(257), 'alice')).toThrow(/12 to 256/)
      expect(() => checkPasswordRules('alice.example', 'ALICE.example')).toThrow(/user name/)
      expect(() => checkPasswordRules('x'.repeat(12), 'alice')).not.toThrow()
      expect(() => checkPasswordRules('😀'.repeat(12), 'alice')).not.toThrow()
    })

    it('the semaphore runs at most `size` tasks at once', async () => {
      const slots = new Semaphore(2)
      let running = 0
      let peak = 0
      await Promise.all(
        Array.from({ length: 6 }, () =>
          slots.run(async () => {
            running++
            peak = Math.max(peak, running)
            await new Promise((r) => setTimeout(r, 5))
            running--
          }),
        ),
      )
      expect(peak).toBe(2)
    })
  })

  describe('UserStore', () => {
    it('creates, lists and authenticates accounts; never returns the hash', async () => {
      const users = new UserStore({ db, clock, hasher })
      const alice = await users.create({ username: 'alice', password: PASSWORD, role: 'admin' }, 'setup')
      expect(alice).toEqual({
        username: 'alice',
        role: 'admin',
        disabled: false,
        createdAt: '2026-06-01T00:00:00.000Z',
        createdBy: 'setup',
        passwordChangedAt: '2026-06-01T00:00:00.000Z',
      })
      await expect(users.create({ username: 'alice', password: PASSWORD, role: 'viewer' }, 'x')).rejects.toSatisfy(
        (e) => hasCode(e, 'PSW_ERR_CONFLICT'),
      )
      await expect(users.create({ username: 'Alice', password: PASSWORD, role: 'viewer' }, 'x')).rejects.toSatisfy(
        (e) => hasCode(e, 'PSW_ERR_INVALID_ARGUMENT'),
      )
      expect(JSON.stringify(await users.list())).not.toContain('argon2')
      expect(JSON.stringify(await users.get('alice'))).not.toContain('argon2')
      expect(await users.authenticate('alice', PASSWORD)).toMatchObject({ username: 'alice' })
      expect(await users.authenticate('alice', 'wrong password!')).toBeUndefined()
      expect(await users.authenticate('nobody', PASSWORD)).toBeUndefined()
      expect(await users.authenticate('../../etc', PASSWORD)).toBeUndefined()
    })

    it('the last enabled admin cannot be removed, demoted or disabled', async () => {
      const users = new UserStore({ db, clock, hasher })
      await users.create({ username: 'alice', password: PASSWORD, role: 'admin' }, 'setup')
      await users.create({ username: 'bob', password: PASSWORD, role: 'operator' }, 'alice')
      for (const attempt of [
        () => users.remove('alice'),
        () => users.update('alice', { role: 'operator' }),
        () => users.update('alice', { disabled: true }),
      ]) {
        await expect(attempt()).rejects.toSatisfy((e) => hasCode(e, 'PSW_ERR_CONFLICT'))
      }
      await users.update('bob', { role: 'admin' })
      const { after } = await users.update('alice', { disabled: true })
      expect(after.disabled).toBe(true)
      // a disabled account cannot log in, and bob is now the last enabled admin
      expect(await users.authenticate('alice', PASSWORD)).toBeUndefined()
      await expect(users.remove('bob')).rejects.toSatisfy((e) => hasCode(e, 'PSW_ERR_CONFLICT'))
      expect((await users.remove('alice')).username).toBe('alice')
      await expect(users.remove('alice')).rejects.toSatisfy((e) => hasCode(e, 'PSW_ERR_NOT_FOUND'))
    })

    it('a password change re-hashes and stamps passwordChangedAt', async () => {
      const users = new UserStore({ db, clock, hasher })
      await users.create({ username: 'carol', password: PASSWORD, role: 'viewer' }, 'x')
      clock.advance(60_000)
      const { after } = await users.update('carol', { password: 'another long password' })
      expect(after.passwordChangedAt).toBe('2026-06-01T00:01:00.000Z')
      expect(await users.authenticate('carol', PASSWORD)).toBeUndefined()
      expect(await users.authenticate('carol', 'another long password')).toBeDefined()
      await expect(users.update('carol', { password: 'carol' })).rejects.toSatisfy((e) =>
        hasCode(e, 'PSW_ERR_INVALID_ARGUMENT'),
      )
    })
  })

  describe('SessionStore', () => {
    const open = (opts = {}) => new SessionStore({ db, clock, log: silentLogger() }, opts)

    it('stores only the hash of the id; resolves a live session with its CSRF secret', async () => {
      const sessions = open()
      const { id, session } = await sessions.create('alice', 'admin')
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/)
      expect(session.csrf).toMatch(/^[A-Za-z0-9_-]{43}$/)
      const keys: string[] = []
      for await (const [k] of db.iterate('session:')) keys.push(k)
      expect(keys).toEqual([`session:${session.key}`])
      expect(keys[0]).not.toContain(id)
      expect(await sessions.resolve(id)).toMatchObject({ user: 'alice', role: 'admin', csrf: session.csrf })
      expect(await sessions.resolve(`${id.slice(0, -1)}A`)).toBeUndefined()
      expect(await sessions.resolve('short')).toBeUndefined()
    })

    it('expires after 30 min idle and 12 h absolute; lastSeen writes are throttled', async () => {
      const sessions = open()
      const { id } = await sessions.create('alice', 'admin')
      let writes = 0
      const off = db.onWrite(() => writes++)
      for (let i = 0; i < 10; i++) {
        clock.advance(5_000)
        await sessions.resolve(id)
      }
      expect(writes).toBe(0)
      clock.advance(20_000)
      await sessions.resolve(id)
      expect(writes).toBe(1)
      off()
      // keep it busy for 11 h 59 min: idle never reached
      for (let i = 0; i < 11 * 3 + 2; i++) {
        clock.advance(20 * 60_000)
        expect(await sessions.resolve(id), `step ${i}`).toBeDefined()
      }
      clock.advance(20 * 60_000)
      expect(await sessions.resolve(id)).toBeUndefined()

      const idle = await sessions.create('bob', 'viewer')
      clock.advance(30 * 60_000)
      expect(await sessions.resolve(idle.id)).toBeUndefined()
    })

    it('destroy, destroyAllFor (keeping one) and purge; listeners hear about ended sessions', async () => {
      const sessions = open()
      const ended: string[] = []
      sessions.onEnd((e) => ended.push(e.user))
      const a1 = await sessions.create('alice', 'admin')
      const a2 = await sessions.create('alice', 'admin')
      const a3 = await sessions.create('alice', 'admin')
      const b = await sessions.create('bob', 'viewer')
      await sessions.destroy(a1.id)
      expect(await sessions.resolve(a1.id)).toBeUndefined()
      expect(await sessions.destroyAllFor('alice', a3.session.key)).toBe(1)
      expect(await sessions.resolve(a2.id)).toBeUndefined()
      expect(await sessions.resolve(a3.id)).toBeDefined()
      expect(ended).toEqual(['alice', 'alice'])
      clock.advance(31 * 60_000)
      expect(await sessions.purge()).toBe(2)
      expect(await sessions.resolve(b.id)).toBeUndefined()
      sessions.start()
      sessions.stop()
    })
  })

  describe('ApiTokenStore', () => {
    it('issues psw_<id>_<secret>, stores the SHA-256 only, verifies, expires and records use', async () => {
      const tokens = new ApiTokenStore({ db, clock })
      const { token, view } = await tokens.create({ name: 'prometheus', role: 'viewer' }, 'operator:alice')
      expect(token).toMatch(/^psw_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
      const stored = JSON.stringify(await db.get(`apitoken:${view.id}`))
      expect(stored).not.toContain(token.slice(22))
      expect(await tokens.verify(token)).toMatchObject({ id: view.id, role: 'viewer' })
      expect((await tokens.list())[0]!.lastUsedAt).toBe('2026-06-01T00:00:00.000Z')
      expect(JSON.stringify(await tokens.list())).not.toContain('secretHash')
      expect(await tokens.verify(`${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined()
      expect(await tokens.verify('psw_0000000000000000_x')).toBeUndefined()

      const expiring = await tokens.create(
        { name: 'msp', role: 'operator', expiresAt: new Date(clock.now() + 3_600_000).toISOString() },
        'x',
      )
      expect(await tokens.verify(expiring.token)).toBeDefined()
      clock.advance(3_600_000)
      expect(await tokens.verify(expiring.token)).toBeUndefined()
      await expect(
        tokens.create({ name: 'past', role: 'viewer', expiresAt: '2020-01-01T00:00:00Z' }, 'x'),
      ).rejects.toSatisfy((e) => hasCode(e, 'PSW_ERR_INVALID_ARGUMENT'))

      await tokens.remove(view.id)
      expect(await tokens.verify(token)).toBeUndefined()
      await expect(tokens.remove(view.id)).rejects.toSatisfy((e) => hasCode(e, 'PSW_ERR_NOT_FOUND'))
    })
  })

  describe('Setup', () => {
    it('a one-time token (stored hashed, fresh at each call) creates the first admin once', async () => {
      const users = new UserStore({ db, clock, hasher })
      const setup = new Setup({ db, clock, users })
      expect(await setup.required()).toBe(true)
      const first = (await setup.setupToken())!
      const token = (await setup.setupToken())!
      expect(token).not.toBe(first)
      expect(JSON.stringify(await db.get(SETUP_KEY))).not.toContain(token)
      await expect(setup.complete(first, { username: 'root', password: PASSWORD })).rejects.toSatisfy((e) =>
        hasCode(e, 'PSW_ERR_UNAUTHORIZED'),
      )
      // two at once: exactly one wins, the other is a conflict
      const results = await Promise.allSettled([
        setup.complete(token, { username: 'alice', password: PASSWORD }),
        setup.complete(token, { username: 'mallory', password: PASSWORD }),
      ])
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
      const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
      expect(codeOf(rejected.reason)).toBe('PSW_ERR_CONFLICT')
      expect((await users.list()).map((u) => [u.username, u.role])).toEqual([['alice', 'admin']])
      expect(await setup.required()).toBe(false)
      expect(await setup.setupToken()).toBeUndefined()
      expect(await db.get(SETUP_KEY)).toBeUndefined()
    })

    it('a setup token expires after 24 h', async () => {
      const setup = new Setup({ db, clock, users: new UserStore({ db, clock, hasher }) })
      const token = (await setup.setupToken())!
      clock.advance(24 * 3_600_000)
      await expect(setup.complete(token, { username: 'alice', password: PASSWORD })).rejects.toThrow(/expired/)
    })

    it('setupBanner prints the link on stdout and logs without the token', () => {
      const lines: string[] = []
      const logged: Array<[object, string]> = []
      setupBanner('https://box:8443/', 'TOKEN123', { info: (o, m) => logged.push([o, m]) }, (l) => lines.push(l))
      expect(lines).toEqual(['setup: https://box:8443/#/setup?token=TOKEN123\n'])
      expect(JSON.stringify(logged)).not.toContain('TOKEN123')
      expect(JSON.stringify(logged)).toContain('https://box:8443/#/setup')
    })
  })

  describe('LoginThrottle', () => {
    it('5 failures per (address, user) and 50 per address in 15 min; Retry-After until the window ends', () => {
      const throttle = new LoginThrottle(clock)
      for (let i = 0; i < 5; i++) {
        expect(throttle.retryAfter('10.0.0.1', 'alice')).toBe(0)
        throttle.failed('10.0.0.1', 'alice')
        clock.advance(1000)
      }
      expect(throttle.retryAfter('10.0.0.1', 'alice')).toBe(15 * 60 - 5)
      expect(throttle.retryAfter('10.0.0.1', 'bob')).toBe(0)
      expect(throttle.retryAfter('10.0.0.2', 'alice')).toBe(0)
      clock.advance(15 * 60_000)
      expect(throttle.retryAfter('10.0.0.1', 'alice')).toBe(0)
      for (let i = 0; i < 50; i++) throttle.failed('10.0.0.3', `user${i}`)
      expect(throttle.retryAfter('10.0.0.3', 'someone-else')).toBeGreaterThan(0)
      expect(throttle.retryAfter('10.0.0.4', 'someone-else')).toBe(0)
    })
  })
})
