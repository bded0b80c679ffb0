/**
 * Timer source injected into the WAN limiter and downloader (as `Clock` is for the time), so
 * tests can drive schedule changes, backoff and pacing without real waits.
 */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** Node's timers. Long-lived timers that should not keep the process alive are unref'd by their owner. */
export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
}

/** Largest delay setTimeout accepts (about 24.8 days); longer delays fire at once otherwise. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** Resolves after `ms` on `timers`; rejects with the signal's reason when it aborts first. */
export function sleepOn(timers: Timers, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const onAbort = () => {
      timers.clearTimeout(handle)
      reject(signal?.reason)
    }
    const handle = timers.setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      },
      Math.min(Math.max(0, ms), MAX_TIMER_MS),
    )
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
