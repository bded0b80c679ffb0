import { isPswError, UpstreamError } from '../../shared/errors.ts'

/**
 * What a failed download attempt means for the next one:
 * - `transient`: network trouble, timeouts, 5xx/408/429, a short body — back off and resume;
 * - `restart`: the server would not resume (the partial is gone) — try again at once;
 * - `integrity`: more bytes than declared, lengths that disagree — not transient;
 * - `disk-full`: PSW_ERR_DISK_FULL — give up, remove the partial;
 * - `fatal`: anything else (404, bad URL, local errors) — give up, keep the partial.
 */
export type FailureKind = 'transient' | 'integrity' | 'restart' | 'fatal' | 'disk-full'

export function classifyFailure(err: unknown): FailureKind {
  if (!isPswError(err)) return 'fatal'
  const details = err.details ?? {}
  switch (err.code) {
    case 'PSW_ERR_DISK_FULL':
      return 'disk-full'
    case 'PSW_ERR_WAN_TIMEOUT':
      return 'transient'
    case 'PSW_ERR_WAN_SIZE':
      return details.kind === 'short' ? 'transient' : 'integrity'
    case 'PSW_ERR_WAN_HTTP': {
      if (details.restart === true) return 'restart'
      const status = details.status
      if (typeof status !== 'number') return 'transient'
      return status >= 500 || status === 408 || status === 429 ? 'transient' : 'fatal'
    }
    default:
      return 'fatal'
  }
}

/**
 * Exponential backoff with "equal jitter" (half fixed, half random) after `failures`
 * consecutive failures, at least the server's Retry-After, never above `maxMs`.
 */
export function backoffDelay(
  failures: number,
  o: { baseMs: number; maxMs: number; random: () => number; retryAfterMs?: number },
): number {
  const exp = Math.min(o.maxMs, o.baseMs * 2 ** Math.min(30, Math.max(0, failures - 1)))
  const jittered = exp / 2 + (exp / 2) * o.random()
  return Math.round(Math.min(o.maxMs, Math.max(jittered, o.retryAfterMs ?? 0)))
}

/** Errors that reach callers carry a code: unexpected ones become PSW_ERR_INTERNAL. */
export function asPswError(err: unknown): unknown {
  if (isPswError(err)) return err
  return new UpstreamError('PSW_ERR_INTERNAL', `download failed: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
  })
}
