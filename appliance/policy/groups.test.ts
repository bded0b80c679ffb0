import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { openTestAppliance, rejectionCode, type TestAppliance } from '../test-fixtures.ts'
import {
  type Group,
  GroupStore,
  globMatch,
  MAX_GROUPS,
  type MatchableDevice,
  matches,
  members,
  osNames,
} from './groups.ts'

const PEER = (n: number) => `12D3KooW${String(n).padStart(44, 'A')}`

const debian = { platform: 'linux', id: 'debian', versionId: '12' }
const ubuntu = { platform: 'linux', id: 'ubuntu', versionId: '24.04' }
const windows = { platform: 'win32', id: 'windows', versionId: '10.0.22631' }

const fleet: MatchableDevice[] = [
  { peerId: PEER(1), hostname: 'ber-kasse-01', tags: ['berlin', 'kiosk'], tier: 'critical', inventory: { os: debian } },
  {
    peerId: PEER(2),
    hostname: 'ber-office-02',
    tags: ['berlin'],
    inventory: { os: ubuntu, hostname: 'ber-office-02.lan' },
  },
  { peerId: PEER(3), hostname: 'muc-kasse-01', tags: ['munich', 'kiosk'], tier: 'high', inventory: { os: windows } },
  { peerId: PEER(4), hostname: 'muc-lab-9', tier: 'low' },
]
const ids = (list: MatchableDevice[]) => list.map((d) => d.peerId.slice(-1))
const group = (match: Group['match']) => ({ match })

describe('glob', () => {
  it('matches * and ? case-insensitively, everything else literally', () => {
    expect(globMatch('ber-*', 'BER-kasse-01')).toBe(true)
    expect(globMatch('*-kasse-??', 'muc-kasse-01')).toBe(true)
    expect(globMatch('*-kasse-?', 'muc-kasse-01')).toBe(false)
    expect(globMatch('a.b', 'axb')).toBe(false)
    expect(globMatch('*', '')).toBe(true)
    expect(globMatch('**a**b**', 'xxaYYb')).toBe(true)
    expect(globMatch('ab', 'abc')).toBe(false)
  })

  it('agrees with a regular expression on many random cases, and stays fast on a hostile pattern', () => {
    let seed = 7
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    const pick = (alphabet: string, len: number) =>
      Array.from({ length: len }, () => alphabet[rand(alphabet.length)]).join('')
    for (let i = 0; i < 3000; i++) {
      const pattern = pick('ab*?', 1 + rand(8))
      const text = pick('ab', rand(10))
      const re = new RegExp(`^${pattern.replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's')
      expect(globMatch(pattern, text), `${pattern} ~ ${text}`).toBe(re.test(text))
    }
    const start = performance.now()
    expect(globMatch(`${'a*'.repeat(120)}b`, 'a'.repeat(255))).toBe(false)
    expect(performance.now() - start).toBeLessThan(200)
  })
})

describe('group membership (pure)', () => {
  it('an empty match is every device', () => {
    expect(ids(members(group({}), fleet))).toEqual(['1', '2', '3', '4'])
  })

  it('tags: all and any', () => {
    expect(ids(members(group({ tags: { all: ['berlin', 'kiosk'] } }), fleet))).toEqual(['1'])
    expect(ids(members(group({ tags: { any: ['munich', 'berlin'] } }), fleet))).toEqual(['1', '2', '3'])
    expect(ids(members(group({ tags: { all: ['kiosk'], any: ['munich'] } }), fleet))).toEqual(['3'])
  })

  it('tiers, with unclassified devices counting as normal', () => {
    expect(ids(members(group({ tiers: ['critical', 'high'] }), fleet))).toEqual(['1', '3'])
    expect(ids(members(group({ tiers: ['normal'] }), fleet))).toEqual(['2'])
  })

  it('os globs over platform, id and id-version; devices without inventory are out', () => {
    expect(osNames(windows)).toEqual(['windows', 'windows-10.0.22631'])
    expect(ids(members(group({ os: ['linux'] }), fleet))).toEqual(['1', '2'])
    expect(ids(members(group({ os: ['ubuntu-24.*'] }), fleet))).toEqual(['2'])
    expect(ids(members(group({ os: ['Windows', 'debian-12'] }), fleet))).toEqual(['1', '3'])
    expect(ids(members(group({ os: ['*'] }), fleet))).toEqual(['1', '2', '3'])
  })

  it('hostname pattern over the enrolled and the reported hostname', () => {
    expect(ids(members(group({ hostnamePattern: '*-kasse-*' }), fleet))).toEqual(['1', '3'])
    expect(ids(members(group({ hostnamePattern: '*.lan' }), fleet))).toEqual(['2'])
  })

  it('explicit PeerIds, combined with other criteria (AND)', () => {
    expect(ids(members(group({ peerIds: [PEER(4), PEER(3)] }), fleet))).toEqual(['3', '4'])
    expect(ids(members(group({ peerIds: [PEER(4), PEER(3)], tiers: ['low'] }), fleet))).toEqual(['4'])
  })

  it('inventories passed in override the summaries on the records', () => {
    const inventories = new Map([[PEER(4), { os: debian, hostname: 'lab' }]])
    expect(ids(members(group({ os: ['debian'] }), fleet, inventories))).toEqual(['1', '4'])
    expect(matches({ hostnamePattern: 'lab' }, fleet[3]!, { hostname: 'lab' })).toBe(true)
  })
})

describe('group store', () => {
  let t: TestAppliance
  let store: GroupStore
  beforeEach(async () => {
    t = await openTestAppliance()
    store = new GroupStore({ db: t.core.db, clock: t.clock })
  })
  afterEach(async () => {
    await t.cleanup()
  })

  it('creates, updates, lists and deletes, durably', async () => {
    const created = await store.create({ id: 'kiosks', name: 'Kiosks', match: { tags: { all: ['Kiosk', 'kiosk'] } } })
    expect(created.match).toEqual({ tags: { all: ['kiosk'] } })
    expect(created).toMatchObject({ createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z' })
    expect(await rejectionCode(store.create({ id: 'kiosks', name: 'again', match: {} }))).toBe('PSW_ERR_CONFLICT')
    t.clock.advance(1000)
    const updated = await store.update('kiosks', { name: 'All kiosks', description: 'tills', match: { os: ['linux'] } })
    expect(updated).toMatchObject({ id: 'kiosks', name: 'All kiosks', createdAt: created.createdAt })
    expect(updated.updatedAt).not.toBe(created.updatedAt)
    await t.reopen()
    store = new GroupStore({ db: t.core.db, clock: t.clock })
    expect(await store.list()).toEqual([updated])
    await store.delete('kiosks')
    expect(await store.get('kiosks')).toBeUndefined()
    expect(await rejectionCode(store.delete('kiosks'))).toBe('PSW_ERR_NOT_FOUND')
    expect(await rejectionCode(store.update('kiosks', { name: 'x', match: {} }))).toBe('PSW_ERR_NOT_FOUND')
  })

  it('validates input with its schema and limits the number of groups', async () => {
    for (const bad of [
      { id: 'Bad Id', name: 'x', match: {} },
      { id: 'ok', name: '', match: {} },
      { id: 'ok', name: 'x', match: { tags: { any: [] } } },
      { id: 'ok', name: 'x', match: { hostnamePattern: 'a[b]' } },
      { id: 'ok', name: 'x', match: { tiers: ['urgent'] } },
      { id: 'ok', name: 'x', match: { extra: 1 } },
    ]) {
      expect(await rejectionCode(store.create(bad as never)), JSON.stringify(bad)).toBe('PSW_ERR_SCHEMA')
    }
    await t.core.db.batch(
      Array.from({ length: MAX_GROUPS }, (_, i) => ({
        type: 'put' as const,
        key: `group:g${i}`,
        value: { id: `g${i}`, name: 'g', match: {}, createdAt: '', updatedAt: '' },
      })),
    )
    expect(await rejectionCode(store.create({ id: 'one-more', name: 'x', match: {} }))).toBe('PSW_ERR_TOO_LARGE')
  })
})
