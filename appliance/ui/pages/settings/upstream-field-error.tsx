import type { ApiError } from '../../api.ts'

/** The configuration paths a server error names (`/wan/schedule/defaultBytesPerSecond`, `body/feeds/0/url`). */
export function errorPaths(message: string): string[] {
  const out: string[] = []
  for (const m of message.matchAll(
    /(?:^|[\s,;:(])(?:body)?\/?((?:feeds|wan|cache|autoDownload|syncIntervalMinutes)[\w/]*)/g,
  ))
    out.push(m[1]!)
  // Checks past the schema name no path: the time zone, a rule (`rule 2 starts and ends at …`).
  if (/unknown time zone/.test(message)) out.push('wan/schedule/timeZone')
  const rule = /rule (\d+) /.exec(message)
  if (rule && /WAN schedule/i.test(message)) out.push(`wan/schedule/rules/${rule[1]}`)
  if (/two feeds have the id/.test(message)) out.push('feeds')
  return out
}

/** A server error shown next to the field(s) it names. */
export function FieldError({ error, path, feedId }: { error: ApiError | undefined; path: string; feedId?: string }) {
  if (!error) return null
  const hit =
    errorPaths(error.message).some((p) => p === path || p.startsWith(`${path}/`)) ||
    // A feed adapter's own check (keys, URLs) names the feed by its id.
    (feedId !== undefined &&
      feedId !== '' &&
      new RegExp(`\\b${feedId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`).test(error.message))
  if (!hit) return null
  return (
    <span class="error-inline" role="alert">
      {error.message}
    </span>
  )
}
