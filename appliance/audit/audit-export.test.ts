import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import type { IterateOptions, StateDb } from '../../shared/store/state-db.ts'
import { CSV_COLUMNS, csvCell } from './audit-export.ts'
import { AuditLog } from './audit-log.ts'
import { type AuditRecord, checkLink, GENESIS_HASH } from './audit-record.ts'
import { type AuditFixture, openAuditFixture, sampleEntry } from './audit-test-helpers.ts'

/** RFC 4180, the tiny way: quoted cells may hold commas, CR, LF and doubled quotes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let cell = ''
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (quoted) {
      if (c !== '"') cell += c
      else if (text[i + 1] === '"') {
        cell += '"'
        i++
      } else quoted = false
    } else if (c === '"') quoted = true
    else if (c === ',') {
      row.push(cell)
      cell = ''
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell)
      rows.push(row)
      row = []
      cell = ''
      i++
    } else cell += c
  }
  if (cell !== '' || row.length > 0) rows.push([...row, cell])
  return rows
}

const collect = async (chunks: AsyncIterable<string>) => {
  const out: string[] = []
  for await (const c of chunks) out.push(c)
  return out
}

describe('AuditLog query and export', () => {
  let fx: AuditFixture
  let records: AuditRecord[]
  const HOUR = 3_600_000
  const t0 = Date.UTC(2026, 2, 1, 8, 0, 0)

  beforeEach(async () => {
    fx = await openAuditFixture()
    records = []
    // 60 records, one an hour: actors op-0..op-2, alternating patch.approve / rollout.advance
    for (let i = 1; i <= 60; i++) {
      records.push(await fx.audit.append(sampleEntry(i)))
      fx.clock.advance(HOUR)
    }
  })
  afterEach(async () => {
    await fx.cleanup()
  })

  const seqs = (rs: AuditRecord[]) => rs.map((r) => r.seq)

  it('returns newest first by default, oldest first on request', async () => {
    expect(seqs((await fx.audit.query({ limit: 3 })).records)).toEqual([60, 59, 58])
    expect(seqs((await fx.audit.query({ limit: 3, order: 'asc' })).records)).toEqual([1, 2, 3])
  })

  it('filters by actor, action prefix, target and time', async () => {
    const all = { limit: 1000 }
    const byActor = (await fx.audit.query({ ...all, actorId: 'op-1' })).records
    expect(byActor.length).toBe(20)
    expect(byActor.every((r) => r.actor.id === 'op-1')).toBe(true)

    expect((await fx.audit.query({ ...all, action: 'rollout' })).records.length).toBe(30)
    expect((await fx.audit.query({ ...all, action: 'rollout.' })).records.length).toBe(30)
    expect((await fx.audit.query({ ...all, action: 'rollout.adv' })).records.length).toBe(0)
    expect((await fx.audit.query({ ...all, action: 'roll' })).records.length).toBe(0)
    expect((await fx.audit.query({ ...all, action: 'patch.approve' })).records.length).toBe(30)

    const byTarget = (await fx.audit.query({ ...all, targetId: 't-2', targetType: 'patch' })).records
    expect(seqs(byTarget)).toEqual([52, 42, 32, 22, 12, 2])

    // seq n was written at t0 + (n-1) hours; bounds are inclusive
    const from = new Date(t0 + 9 * HOUR).toISOString()
    const to = t0 + 19 * HOUR
    expect(seqs((await fx.audit.query({ ...all, from, to, order: 'asc' })).records)).toEqual(
      Array.from({ length: 11 }, (_, i) => i + 10),
    )
    expect((await fx.audit.query({ ...all, from: t0 + 100 * HOUR })).records).toEqual([])
    expect((await fx.audit.query({ ...all, to: t0 - 1 })).records).toEqual([])
    const combined = await fx.audit.query({ ...all, from, to, actorId: 'op-0', action: 'patch' })
    expect(seqs(combined.records)).toEqual([18, 12])
    await expect(fx.audit.query({ from: 'yesterday' })).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
  })

  it('pages with afterSeq/next in both orders', async () => {
    for (const order of ['desc', 'asc'] as const) {
      const seen: number[] = []
      let afterSeq: number | undefined
      for (let pages = 0; pages < 20; pages++) {
        const page = await fx.audit.query({ order, limit: 7, actorId: 'op-2', ...(afterSeq ? { afterSeq } : {}) })
        seen.push(...seqs(page.records))
        if (page.next === undefined) break
        afterSeq = page.next
      }
      const expected = records.filter((r) => r.actor.id === 'op-2').map((r) => r.seq)
      expect(seen).toEqual(order === 'asc' ? expected : expected.reverse())
    }
  })

  it('reads only the time window, found by binary search', async () => {
    let read = 0
    const counting: StateDb = {
      ...fx.db,
      async *iterate<T>(prefix: string, options?: IterateOptions) {
        for await (const entry of fx.db.iterate<T>(prefix, options)) {
          read++
          yield entry
        }
      },
    }
    const audit = new AuditLog({ db: counting, clock: fx.clock, log: silentLogger() })
    await audit.start()
    read = 0
    const page = await audit.query({ from: t0 + 40 * HOUR, to: t0 + 44 * HOUR, limit: 1000 })
    expect(seqs(page.records)).toEqual([45, 44, 43, 42, 41])
    expect(read).toBe(5)
  })

  it('returns a partial page with next when maxScan is reached', async () => {
    const page = await fx.audit.query({ actorId: 'nobody', maxScan: 25 })
    expect(page).toEqual({ records: [], next: 36 })
    expect(await fx.audit.query({ actorId: 'nobody', afterSeq: 36 })).toEqual({ records: [] })
  })

  it('exports JSONL that verifies offline', async () => {
    const text = (await collect(fx.audit.export('jsonl'))).join('')
    const lines = text.trimEnd().split('\n')
    const parsed = lines.map((l) => JSON.parse(l) as AuditRecord)
    expect(parsed).toEqual(records)
    let prev = { seq: 0, hash: GENESIS_HASH }
    for (const r of parsed) {
      expect(checkLink(r, undefined, prev)).toBeUndefined()
      prev = r
    }
    parsed[5]!.reason = 'edited'
    expect(checkLink(parsed[5], undefined, { seq: 5, hash: parsed[4]!.hash })).toMatchObject({ reason: 'hash' })
  })

  it('exports filtered, limited and newest first', async () => {
    const text = (await collect(fx.audit.export('jsonl', { action: 'patch', order: 'desc', limit: 2 }))).join('')
    expect(
      text
        .trimEnd()
        .split('\n')
        .map((l) => (JSON.parse(l) as AuditRecord).seq),
    ).toEqual([60, 58])
  })

  it('exports CSV that parses back, with commas, quotes, newlines and formulas in values', async () => {
    const tricky = await fx.audit.append(
      sampleEntry(61, {
        reason: 'he said "roll back", then\r\nleft; a,b',
        target: { type: 'device', id: '=HYPERLINK("http://evil")' },
        before: { note: 'x,"y"\nz' },
        after: -5,
        requestId: 'req,1',
      }),
    )
    const rows = parseCsv((await collect(fx.audit.export('csv'))).join(''))
    expect(rows[0]).toEqual([...CSV_COLUMNS])
    expect(rows).toHaveLength(62)
    const col = (name: (typeof CSV_COLUMNS)[number]) => CSV_COLUMNS.indexOf(name)
    const last = rows[61]!
    expect(last).toHaveLength(CSV_COLUMNS.length)
    expect(last[col('seq')]).toBe('61')
    expect(last[col('reason')]).toBe(tricky.reason)
    expect(last[col('request_id')]).toBe('req,1')
    expect(last[col('target_id')]).toBe(`'${tricky.target.id}`)
    expect(JSON.parse(last[col('before')]!)).toEqual({ note: 'x,"y"\nz' })
    expect(last[col('after')]).toBe("'-5")
    expect(last[col('hash')]).toBe(tricky.hash)
    for (const [i, r] of records.entries()) {
      const row = rows[i + 1]!
      expect(row[col('actor_id')]).toBe(r.actor.id)
      expect(JSON.parse(row[col('after')]!)).toEqual(r.after)
      expect(row[col('time')]).toBe(r.time)
    }
  })

  it('streams in bounded chunks', async () => {
    for (let i = 0; i < 40; i++) await fx.audit.append(sampleEntry(i, { after: { blob: 'z'.repeat(10_000) } }))
    const chunks = await collect(fx.audit.export('jsonl'))
    expect(chunks.length).toBeGreaterThan(3)
    for (const c of chunks) expect(c.length).toBeLessThan((64 << 10) + 20_000)
  })

  it('stops an export when its signal aborts', async () => {
    const abort = new AbortController()
    abort.abort(new Error('gone'))
    await expect(collect(fx.audit.export('csv', {}, { signal: abort.signal }))).rejects.toThrow('gone')
  })
})

describe('csvCell', () => {
  it('quotes only when needed and defuses formulas', () => {
    expect(csvCell('plain')).toBe('plain')
    expect(csvCell('a,b')).toBe('"a,b"')
    expect(csvCell('say "hi"')).toBe('"say ""hi"""')
    expect(csvCell('two\nlines')).toBe('"two\nlines"')
    expect(csvCell('=1+2')).toBe("'=1+2")
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)")
    expect(csvCell('+x,y')).toBe(`"'+x,y"`)
    expect(csvCell('')).toBe('')
  })
})
