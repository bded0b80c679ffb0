import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { StateDb } from '../../shared/store/state-db.ts'
import type { Principal } from '../auth/principal.ts'
import { SESSION_PREFIX } from '../auth/session-store.ts'

/**
 * The web UI's live updates: one server-sent event stream per browser tab
 * (`GET /api/v1/events`, docs/web-ui.md "Live updates"). Events name what changed, never its
 * new value — `event: change` with `data: {"type":"rollout","id":"app-2"}` — and the UI
 * refetches through the REST API, which stays the only source of truth (and the only place
 * that checks who may read what).
 *
 * The source is the state database: every durable write's keys (StateDb.onWrite), mapped to
 * an event by key prefix. Events are coalesced (one per type and id per window) and every
 * client's backlog is bounded: a client that cannot keep up misses events and gets a
 * `resync` event once its socket drains, which tells it to refetch everything it shows.
 */

export type ChangeType = 'rollout' | 'device' | 'patch' | 'upstream' | 'audit' | 'wan' | 'approval' | 'group' | 'swarm'

export interface ChangeEvent {
  type: ChangeType
  /** The changed object (rollout id, PeerId, bundle id, group id); absent: anything of the type. */
  id?: string
}

/**
 * Key prefix → event, longest prefix first (`approval-rule:` before `approval:`). The prefixes
 * are the stores' own: devices.ts, assignments.ts, catalog.ts, policy/groups.ts,
 * policy/approval-store.ts, rollout/rollout-service.ts, audit/audit-record.ts,
 * upstream/upstream-catalog.ts, upstream/bundle-cache.ts, metrics/wan-counters.ts, swarm.ts.
 * Keys of no listed prefix (sessions, tokens, counters, meta) make no event.
 */
const PREFIXES: Array<[prefix: string, type: ChangeType, withId: boolean]> = [
  ['device:', 'device', true],
  ['inventory:', 'device', true],
  // A device's signed assignment: which bundles it should have.
  ['assignment:', 'device', true],
  ['rollout:', 'rollout', true],
  ['bundle:', 'patch', true],
  ['manifest:', 'patch', true],
  ['approval-rule:', 'approval', false],
  // approval:<bundleId>:<group>: the id is the bundle (the patch the decision is about).
  ['approval:', 'approval', true],
  ['group:', 'group', true],
  ['audit:', 'audit', false],
  ['upstream:', 'upstream', false],
  ['cache:', 'upstream', false],
  ['metrics:wan:', 'wan', false],
  ['served:', 'swarm', true],
]

/** The event a durable write of `key` makes, if any. */
export function changeOfKey(key: string): ChangeEvent | undefined {
  for (const [prefix, type, withId] of PREFIXES) {
    if (!key.startsWith(prefix)) continue
    if (!withId) return { type }
    const rest = key.slice(prefix.length)
    const id = type === 'approval' ? rest.split(':')[0] : rest
    return id ? { type, id } : { type }
  }
  return undefined
}

export interface EventHubOptions {
  /** Comment line to keep proxies and the browser from timing the stream out. Default 15 s. */
  heartbeatMs?: number
  /** At most one event per type and id per this window. Default 250 ms. */
  coalesceMs?: number
  /** The browser's reconnect delay (the `retry:` field). Default 3 s. */
  retryMs?: number
  /** A client with more than this many bytes unsent misses events until it drains. Default 64 KiB. */
  maxBufferedBytes?: number
  /** Distinct pending events per window before they collapse to one per type. Default 500. */
  maxPending?: number
}

/** What the hub uses of a response: node's http.ServerResponse or http2.Http2ServerResponse. */
export interface Raw {
  writeHead(status: number, headers: Record<string, string | number | string[]>): unknown
  write(chunk: string): boolean
  end(chunk?: string): unknown
  on(event: 'close', listener: () => void): unknown
  once(event: 'drain', listener: () => void): unknown
  /** HTTP/1.1: bytes not yet taken by the socket. */
  writableLength?: number
  /** HTTP/2: the stream, with its own backlog. */
  stream?: { writableLength: number }
}

/** Bytes written to the response that the socket (or HTTP/2 stream) has not taken yet. */
const buffered = (res: Raw): number => res.stream?.writableLength ?? res.writableLength ?? 0

interface Client {
  res: Raw
  request: FastifyRequest
  /** The login session the stream belongs to (its key), if a session opened it. */
  sessionKey: string | undefined
  /** Missed events (backlog over the cap); a `resync` goes out when the socket drains. */
  overflowed: boolean
}

/** Fan-out of change events to the open SSE streams. */
export class EventHub {
  readonly #clients = new Set<Client>()
  readonly #pending = new Map<string, ChangeEvent>()
  readonly #o: Required<EventHubOptions>
  #flushTimer: NodeJS.Timeout | undefined
  #heartbeat: NodeJS.Timeout | undefined
  #closed = false
  /** Events written to clients (for tests and metrics). */
  sent = 0
  /** Events a client missed because its backlog was over the cap. */
  dropped = 0

  constructor(options: EventHubOptions = {}) {
    this.#o = {
      heartbeatMs: options.heartbeatMs ?? 15_000,
      coalesceMs: options.coalesceMs ?? 250,
      retryMs: options.retryMs ?? 3000,
      maxBufferedBytes: options.maxBufferedBytes ?? 64 << 10,
      maxPending: options.maxPending ?? 500,
    }
  }

  get clients(): number {
    return this.#clients.size
  }

  /** Queues an event; it goes out at the end of the current coalescing window. */
  publish(event: ChangeEvent): void {
    if (this.#closed || this.#clients.size === 0) return
    const key = event.id === undefined ? event.type : `${event.type}\u0000${event.id}`
    if (this.#pending.has(key) || this.#pending.has(event.type)) return
    if (this.#pending.size >= this.#o.maxPending) {
      // Too many distinct objects changed at once (a fleet reporting): one event per type.
      for (const [k, e] of this.#pending) if (e.type === event.type) this.#pending.delete(k)
      this.#pending.set(event.type, { type: event.type })
    } else {
      this.#pending.set(key, event)
    }
    this.#flushTimer ??= setTimeout(() => this.#flush(), this.#o.coalesceMs)
  }

  #flush(): void {
    this.#flushTimer = undefined
    if (this.#pending.size === 0) return
    let text = ''
    for (const e of this.#pending.values()) text += `event: change\ndata: ${JSON.stringify(e)}\n\n`
    const count = this.#pending.size
    this.#pending.clear()
    for (const c of this.#clients) {
      if (this.#write(c, text)) this.sent += count
      else this.dropped += count
    }
  }

  /** Writes unless the client's backlog is over the cap; false when it missed the text. */
  #write(c: Client, text: string): boolean {
    if (c.overflowed) return false
    if (buffered(c.res) > this.#o.maxBufferedBytes) {
      c.overflowed = true
      c.res.once('drain', () => {
        if (!this.#clients.has(c)) return
        c.overflowed = false
        c.res.write('event: resync\ndata: {}\n\n')
      })
      return false
    }
    c.res.write(text)
    return true
  }

  /** Takes over the request's response as an event stream until the client or the hub ends it. */
  attach(request: FastifyRequest, res: Raw, headers: Record<string, string | number | string[]> = {}): void {
    if (this.#closed) {
      // Closing (fastify itself answers new requests with 503 by then): no stream.
      res.writeHead(503, { 'cache-control': 'no-store' })
      res.end()
      return
    }
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      // No buffering by a reverse proxy (nginx), should someone put one in front.
      'x-accel-buffering': 'no',
    })
    res.write(`retry: ${this.#o.retryMs}\n: connected\n\n`)
    const p = (request as { principal?: Principal }).principal
    const client: Client = {
      res,
      request,
      sessionKey: p?.kind === 'session' ? p.session.key : undefined,
      overflowed: false,
    }
    this.#clients.add(client)
    res.on('close', () => {
      this.#clients.delete(client)
      if (this.#clients.size === 0) this.#stopHeartbeat()
    })
    this.#heartbeat ??= setInterval(() => {
      for (const c of this.#clients) this.#write(c, ': ping\n\n')
    }, this.#o.heartbeatMs)
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat)
    this.#heartbeat = undefined
  }

  /** Ends the streams whose request passes `test` (e.g. a session that logged out). */
  disconnect(test: (request: FastifyRequest) => boolean): number {
    let n = 0
    for (const c of [...this.#clients]) {
      if (!test(c.request)) continue
      this.#clients.delete(c)
      c.res.end()
      n++
    }
    if (this.#clients.size === 0) this.#stopHeartbeat()
    return n
  }

  /** Whether a stream of this login session is open. */
  hasSession(sessionKey: string): boolean {
    for (const c of this.#clients) if (c.sessionKey === sessionKey) return true
    return false
  }

  /** Ends the streams of a login session (logout, expiry, password or role change). */
  endSession(sessionKey: string): number {
    return this.disconnect((r) => {
      const p = (r as { principal?: Principal }).principal
      return p?.kind === 'session' && p.session.key === sessionKey
    })
  }

  /** Ends every stream and refuses new ones (the server is closing). */
  close(): void {
    this.#closed = true
    clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    this.#pending.clear()
    this.disconnect(() => true)
  }
}

export interface EventRoutesDeps {
  db: Pick<StateDb, 'onWrite' | 'get'>
  hub?: EventHub
  options?: EventHubOptions
}

/**
 * `GET /api/v1/events`. `auth.onRequest` admits the caller (any role). A session's streams end
 * when its record leaves the database (logout, expiry, password or role change, account
 * removal); every stream ends on `app.close()` (a preClose hook: fastify would otherwise wait
 * for them forever).
 */
export function registerEventRoutes(
  app: FastifyInstance,
  deps: EventRoutesDeps,
  auth: { onRequest: (r: FastifyRequest) => Promise<void> },
): EventHub {
  const hub = deps.hub ?? new EventHub(deps.options)
  const { db } = deps
  /** A session's key was written: if it was deleted (logout, expiry, account change), end its streams. */
  const checkSession = (sessionKey: string) => {
    db.get(SESSION_PREFIX + sessionKey).then(
      (record) => {
        if (record === undefined) hub.endSession(sessionKey)
      },
      () => hub.endSession(sessionKey),
    )
  }
  const off = db.onWrite((keys) => {
    for (const key of keys) {
      if (key.startsWith(SESSION_PREFIX)) {
        const sessionKey = key.slice(SESSION_PREFIX.length)
        if (hub.hasSession(sessionKey)) checkSession(sessionKey)
        continue
      }
      const event = changeOfKey(key)
      if (event) hub.publish(event)
    }
  })
  app.addHook('preClose', async () => {
    off()
    hub.close()
  })
  app.get(
    '/api/v1/events',
    {
      onRequest: auth.onRequest,
      schema: {
        description:
          'Server-sent events (text/event-stream) for the web UI: `event: change` with data `{ type, id? }` naming what changed (refetch it through the API), `event: resync` (refetch everything), a comment line every 15 s. Any role.',
      },
    },
    async (request, reply) => {
      reply.hijack()
      // Headers other hooks set on the reply (security headers) go out with the stream.
      const headers: Record<string, string | number | string[]> = {}
      for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) headers[name] = value
      hub.attach(request, reply.raw as unknown as Raw, headers)
    },
  )
  return hub
}
