import { EventEmitter } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { get, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { AuthError } from '../../shared/errors.ts'
import { silentLogger } from '../../shared/log.ts'
import { openStateDb, type StateDb } from '../../shared/store/state-db.ts'
import { installErrorHandler } from './error-handler.ts'
import { changeOfKey, EventHub, registerEventRoutes } from './events.ts'

/** An open SSE stream: its raw text so far, and helpers to wait for what comes. */
interface Stream {
  res: IncomingMessage
  text: () => string
  events: () => Array<{ event: string; data: unknown }>
  waitFor: (test: (text: string) => boolean, ms?: number) => Promise<void>
  ended: Promise<void>
}

function open(url: string, headers: Record<string, string> = {}): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      let text = ''
      const waiters: Array<() => void> = []
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        text += d
        for (const w of waiters.splice(0)) w()
      })
      const ended = new Promise<void>((r) => res.on('close', () => r()))
      const stream: Stream = {
        res,
        text: () => text,
        events: () =>
          text
            .split('\n\n')
            .map((block) => {
              const event = /^event: (.*)$/m.exec(block)?.[1]
              const data = /^data: (.*)$/m.exec(block)?.[1]
              return event && data ? { event, data: JSON.parse(data) as unknown } : undefined
            })
            .filter((e): e is { event: string; data: unknown } => e !== undefined),
        waitFor: (test, ms = 5000) =>
          new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`timed out; stream so far:\n${text}`)), ms)
            const check = () => {
              if (test(text)) {
                clearTimeout(timer)
                ok()
              } else waiters.push(check)
            }
            check()
          }),
        ended,
      }
      resolve(stream)
    })
    req.on('error', reject)
  })
}

describe('changeOfKey', () => {
  it('maps the stores’ key prefixes to events', () => {
    expect(changeOfKey('rollout:app-2')).toEqual({ type: 'rollout', id: 'app-2' })
    expect(changeOfKey('device:12D3KooWabc')).toEqual({ type: 'device', id: '12D3KooWabc' })
    expect(changeOfKey('inventory:12D3KooWabc')).toEqual({ type: 'device', id: '12D3KooWabc' })
    expect(changeOfKey('assignment:12D3KooWabc')).toEqual({ type: 'device', id: '12D3KooWabc' })
    expect(changeOfKey(`bundle:${'a'.repeat(64)}`)).toEqual({ type: 'patch', id: 'a'.repeat(64) })
    expect(changeOfKey(`approval:${'b'.repeat(64)}:*`)).toEqual({ type: 'approval', id: 'b'.repeat(64) })
    expect(changeOfKey('approval-rule:sec')).toEqual({ type: 'approval' })
    expect(changeOfKey('group:lab')).toEqual({ type: 'group', id: 'lab' })
    expect(changeOfKey('audit:rec:0000000001')).toEqual({ type: 'audit' })
    expect(changeOfKey('audit:head')).toEqual({ type: 'audit' })
    expect(changeOfKey('upstream:artifact:feed/x')).toEqual({ type: 'upstream' })
    expect(changeOfKey('metrics:wan:day:2026-11-24')).toEqual({ type: 'wan' })
    // Secrets and bookkeeping make no event.
    for (const key of ['token:abc', 'counter:audit', 'meta:schema-version', 'session:xyz', 'user:alice'])
      expect(changeOfKey(key)).toBeUndefined()
  })
})

describe('GET /api/v1/events', () => {
  let dir: string
  let db: StateDb
  let app: FastifyInstance
  let hub: EventHub
  let base: string
  let allow: boolean
  const streams: Stream[] = []

  const start = async (options: ConstructorParameters<typeof EventHub>[0] = {}) => {
    app = Fastify({ logger: false })
    installErrorHandler(app, silentLogger())
    const onRequest = async (_r: FastifyRequest) => {
      if (!allow) throw new AuthError('PSW_ERR_UNAUTHORIZED', 'log in first')
    }
    hub = registerEventRoutes(app, { db, options }, { onRequest })
    await app.listen({ host: '127.0.0.1', port: 0 })
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  }
  const connect = async () => {
    const s = await open(`${base}/api/v1/events`)
    streams.push(s)
    await s.waitFor((t) => t.includes(': connected'))
    return s
  }

  beforeEach(async () => {
    allow = true
    dir = await mkdtemp(join(tmpdir(), 'psw-events-'))
    db = await openStateDb({ path: join(dir, 'db'), schemaVersion: 1 })
  })
  afterEach(async () => {
    for (const s of streams.splice(0)) s.res.destroy()
    await app?.close()
    await db.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('streams a change event for a durable write, with retry: and the SSE headers', async () => {
    await start()
    const s = await connect()
    expect(s.res.statusCode).toBe(200)
    expect(s.res.headers['content-type']).toBe('text/event-stream; charset=utf-8')
    expect(s.res.headers['cache-control']).toBe('no-store')
    expect(s.text()).toMatch(/^retry: \d+\n/)
    await db.put('rollout:app-2', { any: 'thing' })
    await s.waitFor((t) => t.includes('event: change'))
    expect(s.events()).toEqual([{ event: 'change', data: { type: 'rollout', id: 'app-2' } }])
    // A batch: one event per object it touched; keys of no interest make none.
    await db.batch([
      { type: 'put', key: 'device:peer-a', value: 1 },
      { type: 'put', key: 'inventory:peer-a', value: 2 },
      { type: 'put', key: 'counter:x', value: 3 },
      { type: 'put', key: 'group:lab', value: 4 },
    ])
    await s.waitFor((t) => t.includes('"group"'))
    expect(s.events().slice(1)).toEqual([
      { event: 'change', data: { type: 'device', id: 'peer-a' } },
      { event: 'change', data: { type: 'group', id: 'lab' } },
    ])
  })

  it('coalesces: at most one event per type and id per window', async () => {
    await start({ coalesceMs: 200 })
    const s = await connect()
    for (let i = 0; i < 20; i++) await db.put('device:peer-a', i)
    await db.put('device:peer-b', 0)
    await s.waitFor((t) => t.includes('peer-b'))
    await new Promise((r) => setTimeout(r, 300))
    const events = s.events().map((e) => e.data)
    expect(events.filter((e) => JSON.stringify(e).includes('peer-a'))).toHaveLength(1)
    expect(events).toHaveLength(2)
  })

  it('collapses a flood of distinct objects into one event per type', async () => {
    await start({ coalesceMs: 100, maxPending: 10 })
    const s = await connect()
    await db.batch(Array.from({ length: 50 }, (_, i) => ({ type: 'put' as const, key: `device:p${i}`, value: i })))
    await db.put('rollout:r1', 1)
    await s.waitFor((t) => t.includes('"rollout"'))
    const events = s.events().map((e) => e.data as { type: string; id?: string })
    expect(events.filter((e) => e.type === 'device').length).toBeLessThanOrEqual(10)
    expect(events).toContainEqual({ type: 'device' })
  })

  it('sends heartbeat comments', async () => {
    await start({ heartbeatMs: 50 })
    const s = await connect()
    await s.waitFor((t) => t.includes(': ping'))
  })

  it('refuses a caller the auth hook refuses, with the API error', async () => {
    await start()
    allow = false
    const res = await fetch(`${base}/api/v1/events`)
    expect(res.status).toBe(401)
    expect(await res.json()).toMatchObject({ code: 'PSW_ERR_UNAUTHORIZED' })
    expect(hub.clients).toBe(0)
  })

  it('ends every stream on close, without hanging', async () => {
    await start()
    const a = await connect()
    const b = await connect()
    expect(hub.clients).toBe(2)
    const t0 = Date.now()
    await app.close()
    await Promise.all([a.ended, b.ended])
    expect(Date.now() - t0).toBeLessThan(2000)
    expect(hub.clients).toBe(0)
    // Writes after close go nowhere (the listener is removed).
    await db.put('rollout:late', 1)
  })

  it('disconnect() ends the streams of matching requests (logout)', async () => {
    await start()
    const s = await open(`${base}/api/v1/events`, { 'x-test-session': 'one' })
    streams.push(s)
    await s.waitFor((t) => t.includes(': connected'))
    const other = await connect()
    expect(hub.disconnect((r) => r.headers['x-test-session'] === 'one')).toBe(1)
    await s.ended
    expect(hub.clients).toBe(1)
    expect(other.res.destroyed).toBe(false)
  })
})

describe('GET /api/v1/events and login sessions', () => {
  it('ends a session’s streams when its record leaves the database (logout), not the others', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'psw-events-'))
    const db = await openStateDb({ path: join(dir, 'db'), schemaVersion: 1 })
    const app = Fastify({ logger: false })
    try {
      // What installPrincipal would resolve from the cookie: a session by its key.
      app.decorateRequest('principal', undefined)
      app.addHook('onRequest', async (request) => {
        const key = request.headers['x-test-session']
        ;(request as { principal?: unknown }).principal =
          typeof key === 'string' ? { kind: 'session', user: 'u', role: 'viewer', session: { key } } : undefined
      })
      const hub = registerEventRoutes(app, { db }, { onRequest: async () => {} })
      await app.listen({ host: '127.0.0.1', port: 0 })
      const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/v1/events`
      await db.put('session:k1', { user: 'u' })
      await db.put('session:k2', { user: 'v' })
      const one = await open(url, { 'x-test-session': 'k1' })
      const two = await open(url, { 'x-test-session': 'k2' })
      await one.waitFor((t) => t.includes(': connected'))
      await two.waitFor((t) => t.includes(': connected'))
      // A touch (put) keeps the stream; the delete ends it.
      await db.put('session:k1', { user: 'u', lastSeen: 1 })
      await new Promise((r) => setTimeout(r, 50))
      expect(hub.clients).toBe(2)
      await db.del('session:k1')
      await one.ended
      expect(hub.clients).toBe(1)
      expect(two.res.destroyed).toBe(false)
      two.res.destroy()
    } finally {
      await app.close()
      await db.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('EventHub backlog', () => {
  /** A response whose socket never drains until told to. */
  class SlowResponse extends EventEmitter {
    written: string[] = []
    writableLength = 0
    writeHead() {
      return this
    }
    write(text: string) {
      this.written.push(text)
      this.writableLength += text.length
      return false
    }
    end() {
      this.emit('close')
    }
  }

  it('caps a slow client’s backlog, then tells it to resync once it drains', async () => {
    const hub = new EventHub({ coalesceMs: 1, maxBufferedBytes: 200 })
    const res = new SlowResponse()
    hub.attach({} as FastifyRequest, res)
    for (let i = 0; i < 40; i++) {
      hub.publish({ type: 'device', id: `peer-${i}` })
      await new Promise((r) => setTimeout(r, 3))
    }
    const bytes = res.written.join('').length
    expect(bytes).toBeLessThan(400)
    expect(hub.dropped).toBeGreaterThan(0)
    res.writableLength = 0
    res.emit('drain')
    expect(res.written.at(-1)).toBe('event: resync\ndata: {}\n\n')
    hub.publish({ type: 'rollout', id: 'r' })
    await new Promise((r) => setTimeout(r, 10))
    expect(res.written.at(-1)).toContain('"rollout"')
    hub.close()
  })
})
