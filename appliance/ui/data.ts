import { useCallback, useEffect, useRef, useState } from 'preact/hooks'
import { ApiError, get } from './api.ts'
import { type Change, onChange } from './live.ts'

export interface Resource<T> {
  data: T | undefined
  error: ApiError | undefined
  loading: boolean
  reload: () => void
}

/**
 * GETs `path` (null: nothing) and again whenever a live change passes `relevant`, or every
 * `pollMs` (for what is not in the database: download progress). One request at a time: a
 * change during a request makes one more request after it; and at most one request per
 * `minIntervalMs` (default 1 s) for the same resource, so a fleet reporting at once does not
 * keep the browser refetching device lists back to back.
 */
export function useApi<T>(
  path: string | null,
  relevant: (change: Change) => boolean,
  options: { pollMs?: number; minIntervalMs?: number } = {},
): Resource<T> {
  const minInterval = options.minIntervalMs ?? 1000
  const [data, setData] = useState<T | undefined>(undefined)
  const [error, setError] = useState<ApiError | undefined>(undefined)
  const [loading, setLoading] = useState(path !== null)
  const state = useRef({
    busy: false,
    again: false,
    path,
    alive: true,
    lastStart: 0,
    timer: undefined as ReturnType<typeof setTimeout> | undefined,
  })
  const relevantRef = useRef(relevant)
  relevantRef.current = relevant

  const load = useCallback(
    async (now = false) => {
      const s = state.current
      if (s.path === null) return
      if (s.busy) {
        s.again = true
        return
      }
      const wait = s.lastStart + minInterval - Date.now()
      if (!now && wait > 0) {
        s.timer ??= setTimeout(() => {
          s.timer = undefined
          if (s.alive) void load(true)
        }, wait)
        return
      }
      s.busy = true
      s.lastStart = Date.now()
      const forPath = s.path
      try {
        const value = await get<T>(forPath)
        if (s.alive && s.path === forPath) {
          setData(value)
          setError(undefined)
        }
      } catch (err) {
        if (s.alive && s.path === forPath)
          setError(err instanceof ApiError ? err : new ApiError(0, 'UI', (err as Error).message))
      } finally {
        s.busy = false
        if (s.alive && s.path === forPath) setLoading(false)
        if (s.again) {
          s.again = false
          void load()
        }
      }
    },
    [minInterval],
  )

  useEffect(() => {
    // The previous answer stays on screen until the new one arrives (search as you type).
    state.current.path = path
    setLoading(path !== null)
    void load(true)
  }, [path, load])

  useEffect(() => {
    const s = state.current
    s.alive = true
    const off = onChange((change) => {
      if (change === 'all' || relevantRef.current(change)) void load()
    })
    const timer = options.pollMs ? setInterval(() => void load(), options.pollMs) : undefined
    return () => {
      s.alive = false
      off()
      clearInterval(timer)
      clearTimeout(s.timer)
      s.timer = undefined
    }
  }, [load, options.pollMs])

  return { data, error, loading, reload: () => void load(true) }
}

/** Change filters. */
export const is =
  (...types: string[]) =>
  (c: Change) =>
    types.includes(c.type)
export const isObject = (type: string, id: string) => (c: Change) =>
  c.type === type && (c.id === undefined || c.id === id)
