import { signal } from '@preact/signals'

/** What changed (GET /api/v1/events, docs/web-ui.md "Live updates"). */
export interface Change {
  type: string
  id?: string
}

type Listener = (change: Change | 'all') => void

const listeners = new Set<Listener>()
/** Whether the event stream is open (shown in the header). */
export const liveConnected = signal(false)

let source: EventSource | undefined
let retryTimer: ReturnType<typeof setTimeout> | undefined
let onGone: () => void = () => {}

/** Subscribes to changes; 'all' means refetch everything (reconnect, missed events). */
export function onChange(listener: Listener): () => void {
  listeners.add(listener)
  return () => listeners.delete(listener)
}

function emit(change: Change | 'all'): void {
  for (const l of listeners) l(change)
}

/**
 * Opens the tab's one event stream (browsers allow 6 HTTP/1.1 connections per host: never
 * more than one stream per tab). `gone` is called when the stream is refused for good (the
 * session ended: EventSource gives up on a 401).
 */
export function startLive(gone: () => void): void {
  onGone = gone
  if (source) return
  clearTimeout(retryTimer)
  const es = new EventSource('/api/v1/events')
  source = es
  let opened = false
  es.onopen = () => {
    liveConnected.value = true
    // After a reconnect, whatever happened meanwhile was missed.
    if (opened) emit('all')
    opened = true
  }
  es.addEventListener('change', (e) => {
    try {
      const change = JSON.parse((e as MessageEvent<string>).data) as Change
      if (typeof change.type === 'string') emit(change)
    } catch {
      // a malformed event: ignore
    }
  })
  es.addEventListener('resync', () => emit('all'))
  es.onerror = () => {
    liveConnected.value = false
    if (es.readyState !== EventSource.CLOSED) return // reconnecting by itself (retry:)
    // Refused (401, or the server is gone): check the session, then try again later.
    source = undefined
    onGone()
    retryTimer = setTimeout(() => startLive(onGone), 5000)
  }
}

export function stopLive(): void {
  clearTimeout(retryTimer)
  source?.close()
  source = undefined
  liveConnected.value = false
}
