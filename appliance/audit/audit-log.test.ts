import { createHash } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { AuditLog } from './audit-log.ts'
import { AUDIT_HEAD_KEY, AUDIT_LIMITS, type AuditRecord, GENESIS_HASH, hashRecord, recordKey } from './audit-record.ts'
import { type AuditFixture, openAuditFixture, sampleEntry } from './audit-test-helpers.ts'

describe('AuditLog', () => {
  let fx: AuditFixture
  beforeEach(async () => {
    fx = await openAuditFixture()
  })
  afterEach(async () => {
    await fx.cleanup()
  })

  const appendMany = async (n: number) => {
    const out: AuditRecord[] = []
    for (let i = 1; i <= n; i++) {
      fx.clock.advance(1000)
      out.push(await fx.audit.append(sampleEntry(i)))
    }
    return out
  }
  const stored = (seq: number) => fx.db.get<AuditRecord>(recordKey(seq)) as Promise<AuditRecord>

  it('keeps the record format and hash rule stable (fixture)', async () => {
    const record = await fx.audit.append({
      actor: { type: 'operator', id: 'alice' },
      action: 'patch.approve',
      target: { type: 'patch', id: 'openssl-3.0.13' },
      before: { approved: false },
      after: { approved: true, groups: ['pilot'] },
      reason: 'CVE-2024-0727',
      requestId: 'req-1',
    })
    expect(record).toEqual({
      v: 1,
      seq: 1,
      time: '2026-03-01T08:00:00.000Z',
      actor: { type: 'operator', id: 'alice' },
      action: 'patch.approve',
      target: { type: 'patch', id: 'openssl-3.0.13' },
      before: { approved: false },
      after: { approved: true, groups: ['pilot'] },
      reason: 'CVE-2024-0727',
      requestId: 'req-1',
      prevHash: GENESIS_HASH,
      hash: record.hash,
    })
    // The canonical text is RFC 8785: keys sorted, no whitespace; the hash is over a domain tag and it.
    const canonical =
      '{"action":"patch.approve","actor":{"id":"alice","type":"operator"},"after":{"approved":true,"groups":["pilot"]},' +
      '"before":{"approved":false},"prevHash":"' +
      GENESIS_HASH +
      '","reason":"CVE-2024-0727","requestId":"req-1","seq":1,"target":{"id":"openssl-3.0.13","type":"patch"},' +
      '"time":"2026-03-01T08:00:00.000Z","v":1}'
    expect(record.hash).toBe(createHash('sha256').update(`patchswarm-audit-v1\n${canonical}`).digest('hex'))
    expect(await stored(1)).toEqual(record)
    expect(await fx.db.get(AUDIT_HEAD_KEY)).toEqual({ v: 1, seq: 1, hash: record.hash, time: record.time })
  })

  it('chains many appends and verifies them', async () => {
    const records = await appendMany(300)
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1))
    for (let i = 1; i < records.length; i++) expect(records[i]!.prevHash).toBe(records[i - 1]!.hash)
    expect(fx.audit.head()).toEqual({ seq: 300, hash: records[299]!.hash })
    expect(await fx.audit.verify()).toEqual({ ok: true, checked: 300, head: fx.audit.head() })
    expect(await fx.audit.verify({ fromSeq: 97, toSeq: 123 })).toMatchObject({ ok: true, checked: 27 })
  })

  it('verifies an empty log', async () => {
    expect(await fx.audit.verify()).toEqual({ ok: true, checked: 0, head: { seq: 0, hash: GENESIS_HASH } })
  })

  describe('detects tampering in LevelDB', () => {
    beforeEach(async () => {
      await appendMany(40)
    })

    it('an edited field', async () => {
      const r = await stored(17)
      await fx.db.put(recordKey(17), { ...r, reason: 'nothing to see here' })
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 17, reason: 'hash' })
      // a ranged check that does not include it passes; one that does, fails
      expect(await fx.audit.verify({ fromSeq: 18 })).toMatchObject({ ok: true })
      expect(await fx.audit.verify({ fromSeq: 10, toSeq: 20 })).toMatchObject({ ok: false, brokenAt: 17 })
    })

    it('an edit with the record hash recomputed', async () => {
      const r = await stored(17)
      const forged = { ...r, after: { state: 'declined' } }
      await fx.db.put(recordKey(17), { ...forged, hash: hashRecord(forged) })
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 18, reason: 'prev-hash' })
    })

    it('a deleted record, in the middle and at the end', async () => {
      await fx.db.del(recordKey(23))
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 23, reason: 'missing' })
    })

    it('a deleted newest record', async () => {
      await fx.db.del(recordKey(40))
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 40, reason: 'missing' })
    })

    it('a cut-off tail with the head moved back', async () => {
      const r38 = await stored(38)
      await fx.db.batch([
        { type: 'del', key: recordKey(39) },
        { type: 'del', key: recordKey(40) },
        { type: 'put', key: AUDIT_HEAD_KEY, value: { v: 1, seq: 38, hash: r38.hash, time: r38.time } },
      ])
      // Undetectable from inside: the log is consistent. The operator's copy of the head shows it.
      await fx.reopen()
      expect(await fx.audit.verify()).toMatchObject({ ok: true, head: { seq: 38 } })
    })

    it('two swapped records', async () => {
      const [a, b] = [await stored(11), await stored(12)]
      await fx.db.batch([
        { type: 'put', key: recordKey(11), value: b },
        { type: 'put', key: recordKey(12), value: a },
      ])
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 11, reason: 'key-mismatch' })
    })

    it('two swapped records renumbered and rehashed: caught at the first record not rewritten', async () => {
      const [a, b] = [await stored(11), await stored(12)]
      const b2 = { ...b, seq: 11, prevHash: a.prevHash }
      const b2hash = hashRecord(b2)
      const a2 = { ...a, seq: 12, prevHash: b2hash }
      await fx.db.batch([
        { type: 'put', key: recordKey(11), value: { ...b2, hash: b2hash } },
        { type: 'put', key: recordKey(12), value: { ...a2, hash: hashRecord(a2) } },
      ])
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 13, reason: 'prev-hash' })
    })

    it('a forged record inserted in the middle', async () => {
      // Everything from 20 on moves up one key; the forgery takes seq 20 and links to 19.
      const r19 = await stored(19)
      const ops = []
      for (let seq = 40; seq >= 20; seq--)
        ops.push({ type: 'put' as const, key: recordKey(seq + 1), value: await stored(seq) })
      const forged = { ...(await stored(20)), seq: 20, prevHash: r19.hash, reason: 'forged' }
      ops.push({ type: 'put' as const, key: recordKey(20), value: { ...forged, hash: hashRecord(forged) } })
      await fx.db.batch(ops)
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 21, reason: 'key-mismatch' })
    })

    it('a forged record appended behind the head', async () => {
      const r40 = await stored(40)
      const forged = { ...r40, seq: 41, prevHash: r40.hash, reason: 'forged' }
      await fx.db.put(recordKey(41), { ...forged, hash: hashRecord(forged) })
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 41, reason: 'beyond-head' })
      // after a restart new records go after it, never over it, and the break stays visible
      await fx.reopen()
      expect(fx.audit.startupCheck()).toMatchObject({ ok: false, reason: 'beyond-head' })
      const next = await fx.audit.append(sampleEntry(99))
      expect(next.seq).toBe(42)
      expect((await stored(41)).reason).toBe('forged')
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 42, reason: 'prev-hash' })
    })

    it('a malformed record', async () => {
      await fx.db.put(recordKey(5), { hello: 'world' })
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 5, reason: 'malformed' })
    })
  })

  describe('restart', () => {
    it('reloads the head from the same LevelDB directory and continues the chain', async () => {
      await appendMany(12)
      const head = fx.audit.head()
      await fx.reopen()
      expect(fx.audit.head()).toEqual(head)
      expect(fx.audit.startupCheck()).toMatchObject({ ok: true, checked: 12 })
      const next = await fx.audit.append(sampleEntry(13))
      expect(next).toMatchObject({ seq: 13, prevHash: head.hash })
      expect(await fx.audit.verify()).toMatchObject({ ok: true, checked: 13 })
    })

    it('checks only the newest records at start', async () => {
      await appendMany(30)
      await fx.db.put(recordKey(3), { ...(await stored(3)), reason: 'edited' })
      await fx.reopen({ startupCheck: 10 })
      expect(fx.audit.startupCheck()).toMatchObject({ ok: true, checked: 10 })
      await fx.reopen({ startupCheck: 100 })
      expect(fx.audit.startupCheck()).toMatchObject({ ok: false, brokenAt: 3 })
    })

    it('refuses to start on a broken chain when told to', async () => {
      await appendMany(5)
      await fx.db.put(recordKey(5), { ...(await stored(5)), action: 'patch.decline' })
      await expect(fx.reopen({ refuseBroken: true })).rejects.toMatchObject({ code: 'PSW_ERR_AUDIT_CHAIN' })
      await expect(fx.audit.append(sampleEntry(6))).rejects.toMatchObject({ code: 'PSW_ERR_INTERNAL' })
    })

    it('survives a lost head: reports it and appends after the newest record', async () => {
      await appendMany(8)
      await fx.db.del(AUDIT_HEAD_KEY)
      await fx.reopen()
      expect(fx.audit.startupCheck()).toMatchObject({ ok: false, brokenAt: 8, reason: 'head-mismatch' })
      expect((await fx.audit.append(sampleEntry(9))).seq).toBe(9)
      expect(await fx.audit.verify()).toMatchObject({ ok: false, brokenAt: 9, reason: 'prev-hash' })
    })

    it('refuses a head of an unknown format version', async () => {
      await appendMany(1)
      await fx.db.put(AUDIT_HEAD_KEY, { v: 2, seq: 1, hash: GENESIS_HASH })
      await expect(fx.reopen()).rejects.toMatchObject({ code: 'PSW_ERR_STORE_SCHEMA_VERSION' })
    })
  })

  it('keeps a gap-free sequence under concurrent appends', async () => {
    const records = await Promise.all(Array.from({ length: 100 }, (_, i) => fx.audit.append(sampleEntry(i))))
    expect(records.map((r) => r.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1))
    expect(await fx.audit.verify()).toMatchObject({ ok: true, checked: 100 })
  })

  describe('appendOps', () => {
    it('commits the record in the same batch as the state change', async () => {
      await appendMany(2)
      const record = await fx.audit.exclusive(async () => {
        const { record, ops } = fx.audit.appendOps(sampleEntry(3, { action: 'rollout.advance' }))
        await fx.db.batch([{ type: 'put', key: 'rollout:r1', value: { ring: 2 } }, ...ops])
        return record
      })
      expect(record.seq).toBe(3)
      expect(await fx.db.get('rollout:r1')).toEqual({ ring: 2 })
      expect(await stored(3)).toEqual(record)
      expect(fx.audit.head()).toEqual({ seq: 3, hash: record.hash })
      expect((await fx.audit.append(sampleEntry(4))).prevHash).toBe(record.hash)
      expect(await fx.audit.verify()).toMatchObject({ ok: true, checked: 4 })
    })

    it('moves nothing when the batch is never written', async () => {
      await appendMany(2)
      const head = fx.audit.head()
      await expect(
        fx.audit.exclusive(async () => {
          const { ops } = fx.audit.appendOps(sampleEntry(3))
          // the state change fails validation before anything is written
          await fx.db.batch([{ type: 'put', key: 'rollout:r1', value: undefined }, ...ops])
        }),
      ).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
      await fx.audit.exclusive(() => {
        fx.audit.appendOps(sampleEntry(3)) // built, then dropped
      })
      expect(fx.audit.head()).toEqual(head)
      expect(await fx.db.get(recordKey(3))).toBeUndefined()
      expect(await fx.db.get('rollout:r1')).toBeUndefined()
      expect((await fx.audit.append(sampleEntry(3))).seq).toBe(3)
      expect(await fx.audit.verify()).toMatchObject({ ok: true, checked: 3 })
    })

    it('chains several records in one batch, and append joins a running section', async () => {
      await fx.audit.exclusive(async () => {
        const a = fx.audit.appendOps(sampleEntry(1))
        const b = fx.audit.appendOps(sampleEntry(2))
        expect(b.record.prevHash).toBe(a.record.hash)
        await fx.db.batch([...a.ops, ...b.ops])
        const c = await fx.audit.append(sampleEntry(3))
        expect(c.prevHash).toBe(b.record.hash)
      })
      expect(fx.audit.head().seq).toBe(3)
      expect(await fx.audit.verify()).toMatchObject({ ok: true, checked: 3 })
    })

    it('never overwrites a record, even when a caller writes the ops after its section', async () => {
      await appendMany(2)
      const late = await fx.audit.exclusive(() => fx.audit.appendOps(sampleEntry(3)))
      await fx.db.batch(late.ops)
      const next = await fx.audit.append(sampleEntry(4))
      expect(next.seq).toBe(4)
      expect(await stored(3)).toEqual(late.record)
      expect(await fx.audit.verify()).toMatchObject({ ok: true, checked: 4 })
    })

    it('is refused outside exclusive(), and after the section has ended', async () => {
      expect(() => fx.audit.appendOps(sampleEntry(1))).toThrow(expect.objectContaining({ code: 'PSW_ERR_INTERNAL' }))
      let later: Promise<void> | undefined
      await fx.audit.exclusive(() => {
        later = new Promise((resolve) => setTimeout(resolve, 5)).then(() => {
          fx.audit.appendOps(sampleEntry(1))
        })
      })
      await expect(later).rejects.toMatchObject({ code: 'PSW_ERR_INTERNAL' })
    })
  })

  describe('bounds', () => {
    it('truncates a large before/after to a marker that keeps the full SHA-256', async () => {
      const big = { blob: 'x'.repeat(100_000), n: 1 }
      const r = await fx.audit.append(sampleEntry(1, { before: big, after: { small: true } }))
      const text = JSON.stringify(big)
      expect(r.before).toEqual({
        $truncated: true,
        bytes: Buffer.byteLength(text),
        sha256: createHash('sha256').update(text).digest('hex'),
        preview: text.slice(0, AUDIT_LIMITS.previewChars),
      })
      expect(r.after).toEqual({ small: true })
      expect(r.truncated).toEqual(['before'])
      expect(JSON.stringify(await stored(1)).length).toBeLessThan(4096)
      expect(await fx.audit.verify()).toMatchObject({ ok: true })
    })

    it('keeps a value exactly at the limit', async () => {
      const value = 'y'.repeat(AUDIT_LIMITS.valueBytes - 2) // plus two quotes
      const r = await fx.audit.append(sampleEntry(1, { after: value }))
      expect(r.after).toBe(value)
      expect(r.truncated).toBeUndefined()
    })

    it('cuts a long reason, redacts secrets and deep nesting', async () => {
      let deep: unknown = 'bottom'
      for (let i = 0; i < 100; i++) deep = { d: deep }
      const r = await fx.audit.append(
        sampleEntry(1, {
          reason: 'r'.repeat(10_000),
          after: { token: 'enroll-secret', nested: { Password: 'hunter2', ok: 1 }, deep },
        }),
      )
      expect(r.reason).toHaveLength(AUDIT_LIMITS.reasonChars + '…[cut]'.length)
      expect(JSON.stringify(r.after)).not.toMatch(/enroll-secret|hunter2/)
      expect(JSON.stringify(r.after)).toContain('[depth limit]')
      expect(await fx.audit.verify()).toMatchObject({ ok: true })
    })

    it('stores before/after as plain JSON (what the hash covers)', async () => {
      const r = await fx.audit.append(
        sampleEntry(1, { before: { when: new Date(0), gone: undefined, f: () => 1, ['__proto__']: { x: 1 } } }),
      )
      const before = r.before as Record<string, unknown>
      expect(Object.getPrototypeOf(before)).toBe(Object.prototype)
      expect(Object.keys(before)).toEqual(['when', '__proto__'])
      expect(before.when).toBe('1970-01-01T00:00:00.000Z')
      expect(await fx.audit.verify()).toMatchObject({ ok: true })
    })

    it('rejects bad identifiers and values that are not JSON', async () => {
      const bad = [
        sampleEntry(1, { action: 'Patch Approve' }),
        sampleEntry(1, { actor: { type: 'root' as never, id: 'x' } }),
        sampleEntry(1, { target: { type: 'patch', id: 'a'.repeat(513) } }),
        sampleEntry(1, { target: { type: 'patch', id: 'line\nbreak' } }),
        sampleEntry(1, { requestId: '' }),
        sampleEntry(1, { after: { n: 10n } }),
        { ...sampleEntry(1), extra: true } as never,
      ]
      for (const entry of bad) {
        await expect(fx.audit.append(entry)).rejects.toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT' })
      }
      expect(fx.audit.head().seq).toBe(0)
    })
  })

  it('refuses appends before start and after stop', async () => {
    const fresh = new AuditLog({ db: fx.db, clock: fx.clock, log: silentLogger() })
    await expect(fresh.append(sampleEntry(1))).rejects.toMatchObject({ code: 'PSW_ERR_INTERNAL' })
    await fx.audit.stop()
    await fx.audit.stop()
    await expect(fx.audit.append(sampleEntry(1))).rejects.toMatchObject({ code: 'PSW_ERR_INTERNAL' })
  })
})
