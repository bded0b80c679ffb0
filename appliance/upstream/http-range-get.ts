import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import * as http from 'node:http'
import * as https from 'node:https'
import { isPswError, UpstreamError, ValidationError } from '../../shared/errors.ts'
import type { Timers } from './wan-timers.ts'

/**
 * One HTTP(S) GET over node:http with the controls the WAN downloader needs and fetch() hides:
 * a deadline for the response headers (covers DNS, connect, TLS and a silent server), a
 * bounded number of redirects, no content decoding, and the raw body stream so the caller
 * decides when to stop reading. Errors carry stable codes: PSW_ERR_WAN_TIMEOUT for the header
 * deadline, PSW_ERR_WAN_HTTP for network failures and redirect trouble; an abort rejects with
 * the signal's reason.
 */

export interface HttpGetOptions {
  headers?: Record<string, string>
  headerTimeoutMs: number
  maxRedirects?: number
  signal?: AbortSignal
  timers: Timers
  userAgent?: string
}

export interface HttpGetResult {
  /** The URL that answered (after redirects). */
  url: string
  status: number
  headers: IncomingHttpHeaders
  /** The body, not yet read. Destroy it when not consuming it to the end. */
  body: IncomingMessage
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

export async function httpGet(url: string, options: HttpGetOptions): Promise<HttpGetResult> {
  const maxRedirects = options.maxRedirects ?? 5
  let current = parseHttpUrl(url)
  for (let hop = 0; ; hop++) {
    const res = await requestOnce(current, options)
    const status = res.statusCode ?? 0
    const location = res.headers.location
    if (!REDIRECTS.has(status) || !location) return { url: current.href, status, headers: res.headers, body: res }
    res.destroy()
    if (hop >= maxRedirects) {
      throw new UpstreamError('PSW_ERR_WAN_HTTP', `more than ${maxRedirects} redirects from ${safeUrl(url)}`, {
        details: { status, redirects: hop },
      })
    }
    current = parseHttpUrl(new URL(location, current).href)
  }
}

/** Parses an http(s) URL; anything else is PSW_ERR_INVALID_ARGUMENT. */
export function parseHttpUrl(url: string): URL {
  let u: URL
  try {
    u = new URL(url)
  } catch (err) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'not a valid URL', { cause: err })
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `unsupported URL scheme ${u.protocol}`)
  }
  return u
}

/** A URL fit for logs: no credentials, no query (signed URLs carry tokens there). */
export function safeUrl(url: string | URL): string {
  try {
    const u = typeof url === 'string' ? new URL(url) : url
    return `${u.protocol}//${u.host}${u.pathname}`
  } catch {
    return '(invalid URL)'
  }
}

/**
 * Turns anything a request or body read threw into a stable error: patchswarm errors and the
 * abort reason pass through, network errors become PSW_ERR_WAN_HTTP with the OS code.
 */
export function toWanError(err: unknown, signal: AbortSignal | undefined, what: string): unknown {
  if (signal?.aborted) return signal.reason
  if (isPswError(err)) return err
  const code = (err as NodeJS.ErrnoException | null)?.code
  return new UpstreamError('PSW_ERR_WAN_HTTP', `${what}: ${code ?? (err as Error)?.message ?? 'network error'}`, {
    cause: err,
    details: code ? { network: code } : undefined,
  })
}

export interface ContentRange {
  start: number
  end: number
  /** Undefined when the server sent `*`. */
  total: number | undefined
}

/** Parses `Content-Range: bytes start-end/total`; undefined when absent or malformed. */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const m = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim())
  if (!m) return undefined
  const start = Number(m[1])
  const end = Number(m[2])
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return undefined
  return { start, end, total: m[3] === '*' ? undefined : Number(m[3]) }
}

/** Content-Length as a number; undefined when absent or malformed. */
export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const v = headers['content-length']
  if (v === undefined || !/^\d+$/.test(v)) return undefined
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : undefined
}

/** A strong ETag (weak ones may not be used in If-Range, RFC 9110 §13.1.5). */
export function isStrongEtag(etag: string | undefined): etag is string {
  return etag?.startsWith('"') === true
}

/** Seconds or HTTP date in Retry-After, as milliseconds from `now`; undefined when absent. */
export function retryAfterMs(headers: IncomingHttpHeaders, now: number): number | undefined {
  const v = headers['retry-after']
  if (!v) return undefined
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

function requestOnce(u: URL, options: HttpGetOptions): Promise<IncomingMessage> {
  const { signal, timers, headerTimeoutMs } = options
  return new Promise<IncomingMessage>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const mod = u.protocol === 'https:' ? https : http
    const req = mod.request(u, {
      method: 'GET',
      signal,
      headers: {
        'user-agent': options.userAgent ?? 'patchswarm-appliance',
        'accept-encoding': 'identity',
        ...options.headers,
      },
    })
    const timer = timers.setTimeout(() => {
      req.destroy(
        new UpstreamError('PSW_ERR_WAN_TIMEOUT', `no response from ${u.host} within ${headerTimeoutMs} ms`, {
          details: { phase: 'headers' },
        }),
      )
    }, headerTimeoutMs)
    req.once('response', (res) => {
      timers.clearTimeout(timer)
      resolve(res)
    })
    req.on('error', (err) => {
      // After the response, errors surface on the body stream; this listener only keeps a late
      // request error from becoming an uncaught exception.
      timers.clearTimeout(timer)
      reject(toWanError(err, signal, `GET ${safeUrl(u)}`))
    })
    req.end()
  })
}
