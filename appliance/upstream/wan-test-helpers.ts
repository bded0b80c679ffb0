/**
 * Test helpers for the WAN downloader (not used by production code): manual timers that move a
 * ManualClock, and a real HTTP server on 127.0.0.1 port 0 whose behaviour each test scripts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ManualClock } from '../../shared/clock.ts'
import type { Timers } from './wan-timers.ts'

/** Timers that fire only when `advance` moves the clock past them, in time order. */
export class ManualTimers implements Timers {
  readonly clock: ManualClock
  readonly #due = new Map<number, { at: number; fn: () => void }>()
  #seq = 0

  constructor(clock: ManualClock) {
    this.clock = clock
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#seq
    this.#due.set(id, { at: this.clock.now() + Math.max(0, ms), fn })
    return id
  }

  clearTimeout(handle: unknown): void {
    this.#due.delete(handle as number)
  }

  get pending(): number {
    return this.#due.size
  }

  /** Moves the clock by `ms`, firing due timers in order; lets promise callbacks run in between. */
  async advance(ms: number): Promise<void> {
    const target = this.clock.now() + ms
    for (;;) {
      await flushMicrotasks()
      let next: [number, { at: number; fn: () => void }] | undefined
      for (const entry of this.#due) if (!next || entry[1].at < next[1].at) next = entry
      if (!next || next[1].at > target) break
      this.#due.delete(next[0])
      this.clock.set(Math.max(this.clock.now(), next[1].at))
      next[1].fn()
    }
    this.clock.set(target)
    await flushMicrotasks()
  }
}

/** Lets every queued promise callback run (not a wait for time). */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

export interface RecordedRequest {
  path: string
  headers: IncomingMessage['headers']
}

export interface TestServer {
  url: (path?: string) => string
  requests: RecordedRequest[]
  close: () => Promise<void>
}

export type TestHandler = (req: IncomingMessage, res: ServerResponse, index: number) => unknown

/** An HTTP server on 127.0.0.1:0; `handler` gets each request with its 0-based index. */
export async function startTestServer(handler: TestHandler): Promise<TestServer> {
  const requests: RecordedRequest[] = []
  const server = createServer((req, res) => {
    const index = requests.push({ path: req.url ?? '/', headers: req.headers }) - 1
    Promise.resolve()
      .then(() => handler(req, res, index))
      .catch((err) => res.destroy(err))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: (path = '/artifact') => `http://127.0.0.1:${port}${path}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

export interface ServeOptions {
  etag?: string
  /** Answer Range requests with 206 (default true). */
  honourRange?: boolean
  /** Send only this many bytes of the body, then cut the connection. */
  cutAfter?: number
  /** Send this many bytes of the body, then keep the connection open and silent. */
  stallAfter?: number
}

/**
 * Serves `body` like a static file server: ETag, Range and If-Range (a mismatching If-Range gets
 * the whole body with 200), optionally cutting or stalling the body part way.
 */
export function serveBytes(req: IncomingMessage, res: ServerResponse, body: Buffer, o: ServeOptions = {}): void {
  const etag = o.etag ?? '"v1"'
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  const ifRange = req.headers['if-range']
  let start = 0
  if (range && o.honourRange !== false && (ifRange === undefined || ifRange === etag)) {
    start = Number(range[1])
    res.writeHead(206, {
      etag,
      'content-length': body.length - start,
      'content-range': `bytes ${start}-${body.length - 1}/${body.length}`,
    })
  } else {
    res.writeHead(200, { etag, 'content-length': body.length })
  }
  const rest = body.subarray(start)
  if (o.cutAfter !== undefined) {
    res.write(rest.subarray(0, o.cutAfter), () => res.socket?.destroy())
    return
  }
  if (o.stallAfter !== undefined) {
    res.write(rest.subarray(0, o.stallAfter))
    return
  }
  res.end(rest)
}
