/** Bytes as KiB/MiB/GiB with one decimal. */
export function bytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let u = 0
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`
}

export function percent(part: number, whole: number): string {
  if (whole <= 0) return '0%'
  return `${Math.round((100 * part) / whole)}%`
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' })

/** "3 minutes ago" for an ISO time or epoch ms. */
export function ago(t: string | number | undefined, now = Date.now()): string {
  if (t === undefined) return 'never'
  const ms = typeof t === 'number' ? t : Date.parse(t)
  if (!Number.isFinite(ms)) return '—'
  const s = Math.round((ms - now) / 1000)
  const abs = Math.abs(s)
  if (abs < 60) return rtf.format(s, 'second')
  if (abs < 3600) return rtf.format(Math.round(s / 60), 'minute')
  if (abs < 86400) return rtf.format(Math.round(s / 3600), 'hour')
  return rtf.format(Math.round(s / 86400), 'day')
}

export function dateTime(t: string | number | undefined): string {
  if (t === undefined) return '—'
  const d = new Date(t)
  return Number.isNaN(d.getTime()) ? '—' : d.toLocaleString()
}

export const shortId = (id: string, n = 12) => (id.length > n ? `${id.slice(0, n)}…` : id)

/** A device counts as online when it reported within this long (agents poll every minute or so). */
export const ONLINE_MS = 15 * 60_000
export const isOnline = (lastSeen: string | undefined, now = Date.now()) =>
  lastSeen !== undefined && now - Date.parse(lastSeen) < ONLINE_MS

export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'none'] as const
