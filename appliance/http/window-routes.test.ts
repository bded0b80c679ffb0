import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { openTestAppliance, type TestAppliance } from '../test-fixtures.ts'
import { openTestHttp } from './test-http.ts'
import { localWithOffset } from './window-routes.ts'

const sunNight = {
  id: 'sun-night',
  name: 'Sunday night',
  timeZone: 'Europe/Berlin',
  recurrence: { rrule: 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0', dtstart: '2026-01-04T02:00' },
  durationMinutes: 120,
  allowReboot: true,
}

describe('maintenance window preview (POST /api/v1/windows/preview)', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let auth: { authorization: string }

  beforeEach(async () => {
    t = await openTestAppliance()
    ;({ app, auth } = await openTestHttp(t, { now: () => Date.parse('2026-03-20T00:00:00.000Z') }))
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  const preview = (payload: unknown, headers: Record<string, string> = auth) =>
    app.inject({ method: 'POST', url: '/api/v1/windows/preview', payload: payload as object, headers })

  it('lists the next occurrences in UTC and on the zone’s wall clock, across the spring-forward night', async () => {
    const res = await preview({ window: sunNight, count: 3 })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({
      occurrences: [
        {
          start: '2026-03-22T01:00:00.000Z',
          end: '2026-03-22T03:00:00.000Z',
          startLocal: '2026-03-22T02:00+01:00',
          endLocal: '2026-03-22T04:00+01:00',
        },
        // 02:00 does not exist on 2026-03-29: opens at the change (03:00 CEST), closes 04:00 CEST.
        {
          start: '2026-03-29T01:00:00.000Z',
          end: '2026-03-29T02:00:00.000Z',
          startLocal: '2026-03-29T03:00+02:00',
          endLocal: '2026-03-29T04:00+02:00',
        },
        {
          start: '2026-04-05T00:00:00.000Z',
          end: '2026-04-05T02:00:00.000Z',
          startLocal: '2026-04-05T02:00+02:00',
          endLocal: '2026-04-05T04:00+02:00',
        },
      ],
    })
  })

  it('starts at `from`, honours exclusions and cron, and caps count at 50', async () => {
    const cron = {
      ...sunNight,
      recurrence: { cron: '0 22 * * 1-5' },
      durationMinutes: 480,
      exclusions: ['2026-10-26'],
    }
    const res = await preview({ window: cron, from: '2026-10-23T12:00:00.000Z', count: 2 })
    expect(res.statusCode, res.body).toBe(200)
    // Friday 23rd 22:00 CEST, then Monday 26th is excluded: Tuesday 27th 22:00 CET.
    expect(res.json<{ occurrences: Array<{ startLocal: string }> }>().occurrences.map((o) => o.startLocal)).toEqual([
      '2026-10-23T22:00+02:00',
      '2026-10-27T22:00+01:00',
    ])
    expect((await preview({ window: cron, count: 51 })).statusCode).toBe(400)
    expect((await preview({ window: cron, count: 50 })).json<{ occurrences: unknown[] }>().occurrences).toHaveLength(50)
  })

  it('refuses an invalid window with the reason and the field', async () => {
    const zone = await preview({ window: { ...sunNight, timeZone: 'Mars/Olympus' } })
    expect(zone.statusCode).toBe(400)
    expect(zone.json()).toMatchObject({
      code: 'PSW_ERR_INVALID_ARGUMENT',
      message: expect.stringContaining('unknown time zone Mars/Olympus'),
      details: { field: 'timeZone' },
    })
    const rrule = await preview({
      window: { ...sunNight, recurrence: { rrule: 'FREQ=YEARLY', dtstart: '2026-01-04T02:00' } },
    })
    expect(rrule.json()).toMatchObject({ code: 'PSW_ERR_INVALID_ARGUMENT', details: { field: 'recurrence.rrule' } })
    const schema = await preview({ window: { ...sunNight, durationMinutes: 0 } })
    expect(schema.statusCode).toBe(400)
    expect(schema.json()).toMatchObject({
      code: 'PSW_ERR_SCHEMA',
      message: expect.stringContaining('/durationMinutes'),
    })
    expect((await preview({ window: sunNight, from: '2026-02-30T00:00:00Z' })).statusCode).toBe(400)
    expect((await preview({ window: sunNight, extra: 1 })).statusCode).toBe(400)
  })

  it('needs a signed-in principal (any role)', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/windows/preview',
      payload: { window: sunNight },
      remoteAddress: '10.0.0.9',
    })
    expect(res.statusCode).toBe(401)
  })

  it('groups keep their windows through PUT and refuse invalid ones with the field', async () => {
    const put = (payload: unknown) =>
      app.inject({ method: 'PUT', url: '/api/v1/groups/tills', payload: payload as object, headers: auth })
    const created = await app.inject({
      method: 'POST',
      url: '/api/v1/groups',
      payload: { id: 'tills', name: 'Tills', match: {} },
      headers: auth,
    })
    expect(created.statusCode, created.body).toBe(201)
    const res = await put({ name: 'Tills', match: {}, windows: [sunNight], spreadSeconds: 600 })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ windows: [sunNight], spreadSeconds: 600 })
    expect((await app.inject({ method: 'GET', url: '/api/v1/groups/tills', headers: auth })).json()).toMatchObject({
      windows: [sunNight],
    })
    const bad = await put({ name: 'Tills', match: {}, windows: [{ ...sunNight, timeZone: 'Nowhere/Land' }] })
    expect(bad.statusCode).toBe(400)
    expect(bad.json()).toMatchObject({ details: { field: 'timeZone' } })
    const twice = await put({ name: 'Tills', match: {}, windows: [sunNight, sunNight] })
    expect(twice.statusCode).toBe(400)
  })

  it('formats local times with the zone offset', () => {
    expect(localWithOffset(Date.parse('2026-07-01T12:00:00Z'), 'UTC')).toBe('2026-07-01T12:00+00:00')
    expect(localWithOffset(Date.parse('2026-07-01T12:00:00Z'), 'Asia/Kolkata')).toBe('2026-07-01T17:30+05:30')
  })
})
