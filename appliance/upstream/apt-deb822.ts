/**
 * A parser for Debian control-format ("deb822") documents: APT Release/InRelease text and
 * Packages indexes. Pure: text in, stanzas out. Strict about structure (Debian Policy §5.1)
 * and bounded in size, so an untrusted or merely huge index cannot exhaust memory:
 *
 * - stanzas are separated by blank lines (lines of only spaces/tabs count as blank);
 * - a field is `Name: value`; the name is printable US-ASCII without `:`, not starting with
 *   `#` or `-`; names are case-insensitive and unique within a stanza;
 * - a line starting with a space or tab continues the previous field.
 *
 * Malformed input → PSW_ERR_FEED_INVALID; input over a limit → PSW_ERR_TOO_LARGE.
 */
import { UpstreamError } from '../../shared/errors.ts'

export interface Deb822Limits {
  /** Largest input in bytes (UTF-8). */
  maxBytes: number
  maxStanzas: number
  maxFieldsPerStanza: number
  /** Longest field value in characters, continuation lines included. */
  maxFieldLength: number
}

/** Sized for a full Debian `Packages` index (~65k stanzas, ~60 MB). */
export const DEFAULT_DEB822_LIMITS: Readonly<Deb822Limits> = {
  maxBytes: 256 << 20,
  maxStanzas: 200_000,
  maxFieldsPerStanza: 200,
  maxFieldLength: 1 << 20,
}

/**
 * One stanza: field name (lower-cased) → value. A value's first line is the text after the
 * colon; each continuation line follows after `\n`, with its one leading space or tab removed.
 * Leading and trailing whitespace of every line is dropped (multi-line fields whose first line
 * is empty, like `SHA256:`, start with `\n`).
 */
export type Deb822Stanza = ReadonlyMap<string, string>

const FIELD_NAME = /^[!-9;-~]+$/

function invalid(what: string, line: number, message: string): UpstreamError {
  return new UpstreamError('PSW_ERR_FEED_INVALID', `${what}: line ${line}: ${message}`, { details: { line } })
}

function tooLarge(what: string, message: string): UpstreamError {
  return new UpstreamError('PSW_ERR_TOO_LARGE', `${what}: ${message}`)
}

/**
 * Parses stanzas one at a time, so a caller that keeps only a few (an allow-list of packages)
 * never holds the whole index as objects. Throws on the first problem; stanzas already yielded
 * stay valid, but a caller that wants all-or-nothing must not act on them before the end.
 */
export function* iterateDeb822(
  input: string | Uint8Array,
  limits: Partial<Deb822Limits> = {},
  what = 'control file',
): Generator<Deb822Stanza, void, undefined> {
  const lim = { ...DEFAULT_DEB822_LIMITS, ...limits }
  const size = typeof input === 'string' ? Buffer.byteLength(input) : input.byteLength
  if (size > lim.maxBytes) throw tooLarge(what, `${size} bytes, limit ${lim.maxBytes}`)
  // Lenient decoding: Policy requires UTF-8, but one stray Latin-1 maintainer name must not
  // poison a whole (signed, hash-checked) index; the fields we use are ASCII-validated later.
  const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, size).toString('utf8')
  if (text.includes('\0')) throw invalid(what, 1 + countLines(text, text.indexOf('\0')), 'NUL character')

  let stanza = new Map<string, string>()
  let current: { name: string; lines: string[]; length: number } | undefined
  let stanzas = 0
  let lineNo = 0

  const flushField = (): void => {
    if (current === undefined) return
    stanza.set(current.name, current.lines.join('\n'))
    current = undefined
  }

  let pos = 0
  while (pos <= text.length) {
    let end = text.indexOf('\n', pos)
    if (end === -1) end = text.length
    let line = text.slice(pos, end)
    pos = end + 1
    lineNo++
    if (line.endsWith('\r')) line = line.slice(0, -1)

    if (/^[ \t]*$/.test(line)) {
      flushField()
      if (stanza.size > 0) {
        if (++stanzas > lim.maxStanzas) throw tooLarge(what, `more than ${lim.maxStanzas} stanzas`)
        yield stanza
        stanza = new Map()
      }
      continue
    }

    if (line[0] === ' ' || line[0] === '\t') {
      if (current === undefined) throw invalid(what, lineNo, 'continuation line outside a field')
      const cont = line.slice(1).trimEnd()
      current.length += 1 + cont.length
      if (current.length > lim.maxFieldLength) {
        throw tooLarge(what, `field ${current.name} at line ${lineNo} is longer than ${lim.maxFieldLength}`)
      }
      current.lines.push(cont)
      continue
    }

    flushField()
    const colon = line.indexOf(':')
    if (colon <= 0) throw invalid(what, lineNo, 'expected "Field: value"')
    const name = line.slice(0, colon)
    if (!FIELD_NAME.test(name) || name[0] === '#' || name[0] === '-') {
      throw invalid(what, lineNo, `invalid field name ${JSON.stringify(name.slice(0, 80))}`)
    }
    const key = name.toLowerCase()
    if (stanza.has(key)) throw invalid(what, lineNo, `duplicate field ${name}`)
    if (stanza.size >= lim.maxFieldsPerStanza)
      throw tooLarge(what, `more than ${lim.maxFieldsPerStanza} fields in a stanza`)
    const value = line.slice(colon + 1).trim()
    if (value.length > lim.maxFieldLength) {
      throw tooLarge(what, `field ${name} at line ${lineNo} is longer than ${lim.maxFieldLength}`)
    }
    current = { name: key, lines: [value], length: value.length }
  }
  flushField()
  if (stanza.size > 0) {
    if (++stanzas > lim.maxStanzas) throw tooLarge(what, `more than ${lim.maxStanzas} stanzas`)
    yield stanza
  }
}

/** Parses a whole document into its stanzas (see iterateDeb822). */
export function parseDeb822(
  input: string | Uint8Array,
  limits: Partial<Deb822Limits> = {},
  what?: string,
): Deb822Stanza[] {
  return [...iterateDeb822(input, limits, what)]
}

/** A field's value, by case-insensitive name. */
export function deb822Field(stanza: Deb822Stanza, name: string): string | undefined {
  return stanza.get(name.toLowerCase())
}

/** The non-empty lines of a multi-line field (e.g. the entries of `SHA256:`). */
export function deb822Lines(value: string): string[] {
  return value
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
}

function countLines(text: string, upTo: number): number {
  let n = 0
  for (let i = text.indexOf('\n'); i !== -1 && i < upTo; i = text.indexOf('\n', i + 1)) n++
  return n
}
