/**
 * The signed APT `Release` document (the text inside InRelease): which index files exist with
 * which size and SHA-256, and how fresh the whole thing is. Pure: parse, then check against
 * a time and the last `Date` seen, the way APT does (Valid-Until, dates in the future,
 * Suite/Codename) plus a rollback check APT leaves to `Date` comparisons of its own.
 */
import { UpstreamError } from '../../shared/errors.ts'
import { type Deb822Stanza, deb822Field, deb822Lines, parseDeb822 } from './apt-deb822.ts'

/** Largest Release text we parse (Debian's and Ubuntu's are ~100–300 KiB). */
export const MAX_RELEASE_BYTES = 16 << 20

export interface AptReleaseFile {
  /** Path relative to `dists/<suite>/`, e.g. `main/binary-amd64/Packages.gz`. */
  path: string
  size: number
  /** Lower-case hex. */
  sha256: string
}

export interface AptRelease {
  origin?: string
  label?: string
  suite?: string
  codename?: string
  /** `Date`, in ms since the epoch. */
  date: number
  /** `Valid-Until`, in ms since the epoch, when the repository sets one. */
  validUntil?: number
  acquireByHash: boolean
  components: string[]
  architectures: string[]
  /** The `SHA256` section by path. Other hash sections (MD5Sum, SHA1) are ignored. */
  files: ReadonlyMap<string, AptReleaseFile>
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const DATE =
  /^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) (UTC|GMT|Z|[+-]\d{4})$/

/**
 * Parses an RFC 1123 date as APT writes it (`Sat, 10 Jun 2023 08:54:51 UTC`, or a numeric
 * zone like `+0000`). Returns ms since the epoch, or undefined when it is not such a date.
 */
export function parseAptDate(value: string): number | undefined {
  const m = DATE.exec(value.trim())
  if (m === null) return undefined
  const [, d, mon, y, hh, mm, ss, zone] = m as unknown as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ]
  const month = MONTHS.indexOf(mon)
  if (month < 0) return undefined
  const [day, year, hour, minute, second] = [d, y, hh, mm, ss].map(Number) as [number, number, number, number, number]
  if (hour > 23 || minute > 59 || second > 60) return undefined
  const ms = Date.UTC(year, month, day, hour, minute, Math.min(second, 59))
  if (new Date(ms).getUTCDate() !== day) return undefined // 31 Feb and friends
  let offset = 0
  if (zone[0] === '+' || zone[0] === '-') {
    const h = Number(zone.slice(1, 3))
    const mi = Number(zone.slice(3, 5))
    if (h > 23 || mi > 59) return undefined
    offset = (zone[0] === '+' ? 1 : -1) * (h * 60 + mi) * 60_000
  }
  return ms - offset
}

function invalid(message: string): UpstreamError {
  return new UpstreamError('PSW_ERR_FEED_INVALID', message)
}

const HASH_LINE = /^([0-9a-fA-F]{64})\s+(\d{1,16})\s+(\S+)$/

function parseFiles(value: string | undefined, what: string): Map<string, AptReleaseFile> {
  const files = new Map<string, AptReleaseFile>()
  if (value === undefined) throw invalid(`${what} has no SHA256 section (weaker hashes are not trusted)`)
  for (const line of deb822Lines(value)) {
    const m = HASH_LINE.exec(line)
    if (m === null) throw invalid(`${what}: malformed SHA256 line ${JSON.stringify(line.slice(0, 200))}`)
    const [, hex, sizeText, path] = m as unknown as [string, string, string, string]
    const size = Number(sizeText)
    if (!Number.isSafeInteger(size)) throw invalid(`${what}: size out of range for ${path}`)
    if (path.startsWith('/') || path.split('/').some((s) => s === '' || s === '.' || s === '..')) {
      throw invalid(`${what}: unsafe path ${JSON.stringify(path)} in SHA256 section`)
    }
    const prev = files.get(path)
    const sha256 = hex.toLowerCase()
    if (prev !== undefined && (prev.sha256 !== sha256 || prev.size !== size)) {
      throw invalid(`${what}: conflicting SHA256 entries for ${path}`)
    }
    files.set(path, { path, size, sha256 })
  }
  return files
}

function optionalText(stanza: Deb822Stanza, name: string): string | undefined {
  const value = deb822Field(stanza, name)
  return value === undefined || value === '' ? undefined : value
}

/** Parses the signed Release text. Anything malformed → PSW_ERR_FEED_INVALID. */
export function parseRelease(text: string, what = 'Release'): AptRelease {
  const stanzas = parseDeb822(
    text,
    { maxBytes: MAX_RELEASE_BYTES, maxStanzas: 2, maxFieldLength: MAX_RELEASE_BYTES },
    what,
  )
  const stanza = stanzas[0]
  if (stanza === undefined) throw invalid(`${what} is empty`)
  if (stanzas.length > 1) throw invalid(`${what} has more than one stanza`)

  const dateText = deb822Field(stanza, 'Date')
  if (dateText === undefined) throw invalid(`${what} has no Date`)
  const date = parseAptDate(dateText)
  if (date === undefined) throw invalid(`${what}: unparseable Date ${JSON.stringify(dateText.slice(0, 80))}`)
  const validUntilText = deb822Field(stanza, 'Valid-Until')
  const validUntil = validUntilText === undefined ? undefined : parseAptDate(validUntilText)
  if (validUntilText !== undefined && validUntil === undefined) {
    throw invalid(`${what}: unparseable Valid-Until ${JSON.stringify(validUntilText.slice(0, 80))}`)
  }
  const words = (name: string): string[] => (deb822Field(stanza, name) ?? '').split(/\s+/).filter((w) => w !== '')

  const release: AptRelease = {
    date,
    acquireByHash: (deb822Field(stanza, 'Acquire-By-Hash') ?? '').toLowerCase() === 'yes',
    components: words('Components'),
    architectures: words('Architectures'),
    files: parseFiles(deb822Field(stanza, 'SHA256'), what),
  }
  const origin = optionalText(stanza, 'Origin')
  const label = optionalText(stanza, 'Label')
  const suite = optionalText(stanza, 'Suite')
  const codename = optionalText(stanza, 'Codename')
  if (origin !== undefined) release.origin = origin
  if (label !== undefined) release.label = label
  if (suite !== undefined) release.suite = suite
  if (codename !== undefined) release.codename = codename
  if (validUntil !== undefined) release.validUntil = validUntil
  return release
}

export interface ReleaseCheckOptions {
  /** Now, in ms (from the injected clock). */
  now: number
  /** The suite the feed is configured for (`dists/<suite>`). */
  suite: string
  /** The `Date` of the last Release accepted from this feed, when the caller keeps one. */
  lastSeenDate?: number
  /** How far `Date` may lie in the future (clock skew between mirror and appliance). */
  maxFutureSkewMs: number
  /** Refuse Releases without Valid-Until (recommended for security suites). */
  requireValidUntil: boolean
}

/**
 * Freshness and identity of a verified Release:
 * - Suite or Codename must name the configured suite (a validly signed Release of another
 *   suite served in its place is refused) → PSW_ERR_FEED_INVALID; a Release with neither is
 *   accepted, as APT does;
 * - past Valid-Until → PSW_ERR_FEED_EXPIRED (missing while required → PSW_ERR_FEED_INVALID);
 * - Date further in the future than the skew → PSW_ERR_METADATA_NOT_YET_VALID (it would
 *   otherwise become the rollback high-water mark);
 * - Date older than the last one seen → PSW_ERR_METADATA_ROLLBACK. An equal Date is fine.
 */
export function checkRelease(release: AptRelease, options: ReleaseCheckOptions): void {
  const { now, suite } = options
  if ((release.suite !== undefined || release.codename !== undefined) && release.suite !== suite) {
    if (release.codename !== suite) {
      throw invalid(
        `Release is for suite ${JSON.stringify(release.suite ?? '')} / codename ` +
          `${JSON.stringify(release.codename ?? '')}, not the configured ${JSON.stringify(suite)}`,
      )
    }
  }
  if (release.validUntil === undefined) {
    if (options.requireValidUntil) throw invalid('Release has no Valid-Until, and the feed requires one')
  } else if (now > release.validUntil) {
    throw new UpstreamError(
      'PSW_ERR_FEED_EXPIRED',
      `Release expired at ${new Date(release.validUntil).toISOString()} (now ${new Date(now).toISOString()})`,
      { details: { validUntil: release.validUntil, now } },
    )
  }
  if (release.date > now + options.maxFutureSkewMs) {
    throw new UpstreamError(
      'PSW_ERR_METADATA_NOT_YET_VALID',
      `Release is dated ${new Date(release.date).toISOString()}, in the future (now ${new Date(now).toISOString()})`,
      { details: { date: release.date, now } },
    )
  }
  if (options.lastSeenDate !== undefined && release.date < options.lastSeenDate) {
    throw new UpstreamError(
      'PSW_ERR_METADATA_ROLLBACK',
      `Release is dated ${new Date(release.date).toISOString()}, older than the last one seen ` +
        `(${new Date(options.lastSeenDate).toISOString()})`,
      { details: { date: release.date, lastSeenDate: options.lastSeenDate } },
    )
  }
}
