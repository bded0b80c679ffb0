import type { Clock } from '../../shared/clock.ts'
import { hasCode, UpstreamError } from '../../shared/errors.ts'
import { BodyWatchdog } from './body-watchdog.ts'
import type { IndexFetcher } from './feed-types.ts'
import { contentLength, httpGet, safeUrl } from './http-range-get.ts'
import type { WanLimiter } from './wan-limiter.ts'
import type { Timers } from './wan-timers.ts'

export interface IndexFetcherComponents {
  limiter: WanLimiter
  clock: Clock
  timers: Timers
  /** WAN bytes of feed documents, for metrics. */
  onIndexBytes?: (url: string, n: number) => void
}

export interface IndexFetcherSettings {
  headerTimeoutMs: number
  idleTimeoutMs: number
  /** Deadline for the whole document. */
  totalTimeoutMs: number
  maxRedirects: number
  userAgent: string
}

/**
 * The IndexFetcher feed adapters use (see feed-types.ts): one GET of a small document through
 * the WAN limiter, with header, idle and total deadlines, refused past `maxBytes` (checked on
 * Content-Length first, then while reading). No retries: adapters fetch again at the next sync.
 */
export function createIndexFetcher(c: IndexFetcherComponents, s: IndexFetcherSettings): IndexFetcher {
  return async (url, { maxBytes, signal }) => {
    const deadline = new AbortController()
    const timer = c.timers.setTimeout(
      () =>
        deadline.abort(
          new UpstreamError('PSW_ERR_WAN_TIMEOUT', `not complete within ${s.totalTimeoutMs} ms`, {
            details: { phase: 'total' },
          }),
        ),
      s.totalTimeoutMs,
    )
    const inner = signal ? AbortSignal.any([signal, deadline.signal]) : deadline.signal
    let destroy: (() => void) | undefined
    try {
      const res = await httpGet(url, {
        headerTimeoutMs: s.headerTimeoutMs,
        maxRedirects: s.maxRedirects,
        signal: inner,
        timers: c.timers,
        userAgent: s.userAgent,
      })
      const body = res.body
      destroy = () => body.destroy()
      if (res.status < 200 || res.status > 299) {
        throw new UpstreamError('PSW_ERR_FEED_FETCH', `GET ${safeUrl(url)} answered HTTP ${res.status}`, {
          details: { url: safeUrl(url), status: res.status },
        })
      }
      const declared = contentLength(res.headers)
      if (declared !== undefined && declared > maxBytes) throw tooLarge(url, maxBytes)
      const pieces: Buffer[] = []
      let total = 0
      const watchdog = new BodyWatchdog({
        clock: c.clock,
        timers: c.timers,
        idleTimeoutMs: s.idleTimeoutMs,
        minBytesPerSec: () => 0,
        windowMs: 0,
        onTimeout: (err) => body.destroy(err),
      })
      try {
        watchdog.waiting()
        for await (const piece of body as AsyncIterable<Buffer>) {
          watchdog.received(piece.length)
          total += piece.length
          c.onIndexBytes?.(url, piece.length)
          if (total > maxBytes) throw tooLarge(url, maxBytes)
          await c.limiter.take(piece.length, inner)
          pieces.push(piece)
          watchdog.waiting()
        }
      } finally {
        watchdog.stop()
      }
      return Buffer.concat(pieces, total)
    } catch (err) {
      if (signal?.aborted) throw signal.reason
      if (hasCode(err, 'PSW_ERR_TOO_LARGE') || hasCode(err, 'PSW_ERR_FEED_FETCH')) throw err
      const cause = deadline.signal.aborted ? deadline.signal.reason : err
      throw new UpstreamError('PSW_ERR_FEED_FETCH', `GET ${safeUrl(url)} failed: ${(cause as Error)?.message}`, {
        cause,
        details: { url: safeUrl(url), cause: (cause as { code?: string })?.code },
      })
    } finally {
      c.timers.clearTimeout(timer)
      destroy?.()
    }
  }
}

function tooLarge(url: string, maxBytes: number): UpstreamError {
  return new UpstreamError('PSW_ERR_TOO_LARGE', `${safeUrl(url)} is larger than ${maxBytes} bytes`, {
    details: { url: safeUrl(url), maxBytes },
  })
}
