import { useEffect, useState } from 'preact/hooks'
import { type ApiError, api, can, post } from '../api.ts'
import { ConfirmButton, ErrorBox, FieldError, Loading, PageTitle, useAction } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { errorFor, listOf } from '../field-errors.ts'
import { type GroupDef, groupUpdate, type MaintenanceWindow } from '../policy-types.ts'

/**
 * Maintenance windows live on groups (`windows`, `spreadSeconds` of PUT /api/v1/groups/:id).
 * The calendar comes from POST /api/v1/windows/preview (the appliance's own window
 * arithmetic, so the preview is exactly what devices will do, DST nights included).
 */

interface Occurrence {
  start: string
  end: string
  startLocal: string
  endLocal: string
}

const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone
const ZONES: string[] = (() => {
  try {
    return (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf('timeZone')
  } catch {
    return ['UTC']
  }
})()

function recurrenceText(w: MaintenanceWindow): string {
  return 'rrule' in w.recurrence
    ? `${w.recurrence.rrule} from ${w.recurrence.dtstart.replace('T', ' ')}`
    : `cron ${w.recurrence.cron}`
}

function minutesText(m: number): string {
  const h = Math.floor(m / 60)
  const r = m % 60
  return h === 0 ? `${r} min` : r === 0 ? `${h} h` : `${h} h ${r} min`
}

export function WindowsPage() {
  const res = useApi<{ groups: GroupDef[] }>('/api/v1/groups', is('group'))
  const [editing, setEditing] = useState<{ group: string; window?: MaintenanceWindow } | null>(null)
  const operate = can('operate')
  const groups = [...(res.data?.groups ?? [])].sort((a, b) => a.id.localeCompare(b.id))
  const group = (id: string) => groups.find((g) => g.id === id)
  const saveWindows = async (g: GroupDef, windows: MaintenanceWindow[], spreadSeconds = g.spreadSeconds) => {
    await api('PUT', `/api/v1/groups/${encodeURIComponent(g.id)}`, groupUpdate(g, { windows, spreadSeconds }))
    res.reload()
  }
  return (
    <section>
      <PageTitle>Maintenance windows</PageTitle>
      <p class="muted">
        When a group’s devices may install and reboot. Each window recurs on the wall clock of its time zone (an RRULE
        or cron) and stays open for its duration; a group’s windows add up. Downloads are not limited by windows. Your
        browser’s time zone: <strong>{BROWSER_ZONE}</strong>.
      </p>
      {operate && editing === null && groups.length > 0 ? (
        <p>
          <button type="button" class="primary" onClick={() => setEditing({ group: groups[0]!.id })}>
            New window
          </button>
        </p>
      ) : null}
      {editing ? (
        <WindowEditor
          key={`${editing.group}:${editing.window?.id ?? 'new'}`}
          groups={groups}
          initialGroup={editing.group}
          window={editing.window}
          onCancel={() => setEditing(null)}
          onSave={async (groupId, w) => {
            const g = group(groupId)
            if (!g) throw new Error(`no group ${groupId}`)
            const others = (g.windows ?? []).filter((x) => x.id !== (editing.window?.id ?? w.id))
            await saveWindows(g, [...others, w])
            setEditing(null)
          }}
        />
      ) : null}
      <ErrorBox error={res.error} title="Could not load the groups" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data && groups.length === 0 ? (
        <p class="muted">
          Windows belong to groups: create a group on the <a href="#/policies">Policies</a> page first.
        </p>
      ) : null}
      {groups.map((g) => (
        <article key={g.id} class="card group-windows" aria-labelledby={`gw-${g.id}`}>
          <h2 id={`gw-${g.id}`}>
            {g.name} <span class="muted mono">{g.id}</span>{' '}
            <span class="muted">
              ({g.memberCount ?? 0} device{g.memberCount === 1 ? '' : 's'})
            </span>
          </h2>
          {g.windows?.length ? (
            <>
              <div class="table-wrap">
                <table>
                  <caption class="sr-only">Windows of {g.name}</caption>
                  <thead>
                    <tr>
                      <th scope="col">Window</th>
                      <th scope="col">When</th>
                      <th scope="col">Open for</th>
                      <th scope="col">Reboot</th>
                      <th scope="col">Next</th>
                      {operate ? <th scope="col">Actions</th> : null}
                    </tr>
                  </thead>
                  <tbody>
                    {g.windows.map((w) => (
                      <tr key={w.id}>
                        <th scope="row">
                          {w.name} <span class="muted mono">{w.id}</span>
                        </th>
                        <td>
                          <span class="mono">{recurrenceText(w)}</span>
                          <div class="muted">{w.timeZone}</div>
                          {w.exclusions?.length ? <div class="muted">except {w.exclusions.join(', ')}</div> : null}
                        </td>
                        <td>{minutesText(w.durationMinutes)}</td>
                        <td>{w.allowReboot ? 'allowed' : 'no'}</td>
                        <td>
                          <NextOpening window={w} />
                        </td>
                        {operate ? (
                          <td class="decide">
                            <button
                              type="button"
                              aria-label={`Edit window ${w.id} of ${g.id}`}
                              onClick={() => setEditing({ group: g.id, window: w })}
                            >
                              Edit
                            </button>
                            <ConfirmButton
                              label={`Delete window ${w.id} of ${g.id}`}
                              title={`Delete window ${w.name}?`}
                              message={`Devices of ${g.name} get their windows re-issued without it.`}
                              confirmLabel="Delete"
                              danger
                              onConfirm={() =>
                                saveWindows(
                                  g,
                                  (g.windows ?? []).filter((x) => x.id !== w.id),
                                )
                              }
                            />
                          </td>
                        ) : null}
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <Spread group={g} operate={operate} save={(s) => saveWindows(g, g.windows ?? [], s)} />
            </>
          ) : (
            <p class="muted">No window: devices of this group install whenever a rollout reaches them.</p>
          )}
          {operate && !editing ? (
            <button type="button" onClick={() => setEditing({ group: g.id })}>
              Add a window to {g.name}
            </button>
          ) : null}
        </article>
      ))}
    </section>
  )
}

function Spread({ group, operate, save }: { group: GroupDef; operate: boolean; save: (s: number) => Promise<void> }) {
  const [value, setValue] = useState(String(group.spreadSeconds ?? 0))
  const { busy, error, run } = useAction()
  if (!operate)
    return <p class="muted">Install starts spread over {group.spreadSeconds ?? 0} s after a window opens.</p>
  return (
    <form
      class="toolbar"
      onSubmit={async (e) => {
        e.preventDefault()
        await run(async () => {
          await save(Number(value))
        })
      }}
    >
      <label>
        Spread install starts over (seconds)
        <input type="number" min={0} value={value} onInput={(e) => setValue(e.currentTarget.value)} />
        <FieldError id={`sp-${group.id}`} message={error ? (error as Error).message : undefined} />
      </label>
      <button type="submit" disabled={busy}>
        Save spread
      </button>
    </form>
  )
}

/** The first occurrence from now (one preview request per window). */
function NextOpening({ window }: { window: MaintenanceWindow }) {
  const [next, setNext] = useState<Occurrence | null | undefined>(undefined)
  const key = JSON.stringify(window)
  useEffect(() => {
    let alive = true
    post<{ occurrences: Occurrence[] }>('/api/v1/windows/preview', { window, count: 1 }).then(
      (r) => alive && setNext(r.occurrences[0] ?? null),
      () => alive && setNext(null),
    )
    return () => {
      alive = false
    }
  }, [key])
  if (next === undefined) return <span class="muted">…</span>
  if (next === null) return <span class="muted">none</span>
  return (
    <span>
      {next.startLocal.replace('T', ' ').slice(0, 16)} <span class="muted">({localTime(next.start)} your time)</span>
    </span>
  )
}

const localFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' })
const localTime = (iso: string) => localFmt.format(new Date(iso))

interface Draft {
  group: string
  id: string
  name: string
  timeZone: string
  kind: 'rrule' | 'cron'
  rrule: string
  dtstart: string
  cron: string
  duration: string
  allowReboot: boolean
  exclusions: string
}

function draftOf(group: string, w: MaintenanceWindow | undefined): Draft {
  return {
    group,
    id: w?.id ?? '',
    name: w?.name ?? '',
    timeZone: w?.timeZone ?? BROWSER_ZONE,
    kind: w && 'cron' in w.recurrence ? 'cron' : 'rrule',
    rrule: w && 'rrule' in w.recurrence ? w.recurrence.rrule : 'FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0',
    dtstart: w && 'rrule' in w.recurrence ? w.recurrence.dtstart : `${new Date().toISOString().slice(0, 10)}T02:00`,
    cron: w && 'cron' in w.recurrence ? w.recurrence.cron : '0 22 * * 1-5',
    duration: String(w?.durationMinutes ?? 120),
    allowReboot: w?.allowReboot ?? true,
    exclusions: w?.exclusions?.join(', ') ?? '',
  }
}

function windowOf(d: Draft): MaintenanceWindow {
  const exclusions = listOf(d.exclusions)
  return {
    id: d.id.trim() || 'preview',
    name: d.name.trim() || 'preview',
    timeZone: d.timeZone.trim(),
    recurrence: d.kind === 'rrule' ? { rrule: d.rrule.trim(), dtstart: d.dtstart } : { cron: d.cron.trim() },
    durationMinutes: Number(d.duration),
    allowReboot: d.allowReboot,
    ...(exclusions.length ? { exclusions } : {}),
  }
}

function WindowEditor({
  groups,
  initialGroup,
  window,
  onCancel,
  onSave,
}: {
  groups: GroupDef[]
  initialGroup: string
  window: MaintenanceWindow | undefined
  onCancel: () => void
  onSave: (group: string, w: MaintenanceWindow) => Promise<void>
}) {
  const [d, setD] = useState<Draft>(() => draftOf(initialGroup, window))
  const [zoneFilter, setZoneFilter] = useState('')
  const [count, setCount] = useState('10')
  const [from, setFrom] = useState('')
  const [preview, setPreview] = useState<Occurrence[] | undefined>(undefined)
  const [previewError, setPreviewError] = useState<unknown>(undefined)
  const [saveError, setSaveError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  const set = (patch: Partial<Draft>) => setD({ ...d, ...patch })
  const candidate = windowOf(d)
  const previewKey = JSON.stringify([candidate, count, from])

  // The calendar follows the form (debounced); the server validates as it computes.
  useEffect(() => {
    const t = setTimeout(() => {
      const n = Math.min(50, Math.max(1, Number(count) || 10))
      post<{ occurrences: Occurrence[] }>('/api/v1/windows/preview', {
        window: candidate,
        count: n,
        ...(from ? { from: new Date(`${from}T00:00:00Z`).toISOString() } : {}),
      }).then(
        (r) => {
          setPreview(r.occurrences)
          setPreviewError(undefined)
        },
        (err) => {
          setPreview(undefined)
          setPreviewError(err)
        },
      )
    }, 300)
    return () => clearTimeout(t)
  }, [previewKey])

  const error = saveError ?? previewError
  const err = (...f: string[]) => errorFor(error, ...f)
  const attrs = (field: string, ...f: string[]) =>
    err(...f) ? { 'aria-invalid': true as const, 'aria-describedby': `we-${field}` } : {}
  const zoneMatches = zoneFilter
    ? ZONES.filter((z) => z.toLowerCase().includes(zoneFilter.toLowerCase())).slice(0, 200)
    : ZONES
  const unplaced = error && !errorFor(error, 'id', 'name', 'timeZone', 'recurrence', 'durationMinutes', 'exclusions')

  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setSaveError(undefined)
    try {
      await onSave(d.group, windowOf(d))
    } catch (ex) {
      setSaveError(ex)
    } finally {
      setBusy(false)
    }
  }
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="window-form">
      <h2 id="window-form">{window ? `Edit window ${window.name}` : 'New maintenance window'}</h2>
      <div class="grid2">
        <label>
          Group
          <select value={d.group} disabled={!!window} onChange={(e) => set({ group: e.currentTarget.value })}>
            {groups.map((g) => (
              <option key={g.id} value={g.id}>
                {g.name} ({g.id})
              </option>
            ))}
          </select>
        </label>
        <label>
          Window id <span class="muted">(letters, digits, . _ -)</span>
          <input
            value={d.id}
            required
            maxLength={64}
            pattern="[A-Za-z0-9][A-Za-z0-9._\-]*"
            onInput={(e) => set({ id: e.currentTarget.value })}
            {...attrs('id', 'id')}
          />
          <FieldError id="we-id" message={err('id')} />
        </label>
        <label>
          Window name
          <input
            value={d.name}
            required
            maxLength={128}
            onInput={(e) => set({ name: e.currentTarget.value })}
            {...attrs('name', 'name')}
          />
          <FieldError id="we-name" message={err('name')} />
        </label>
      </div>
      <fieldset>
        <legend>Time zone</legend>
        <div class="grid2">
          <label>
            Search time zones
            <input
              type="search"
              value={zoneFilter}
              placeholder="Berlin, New_York, Sydney…"
              onInput={(e) => {
                const v = e.currentTarget.value
                setZoneFilter(v)
                const hits = ZONES.filter((z) => z.toLowerCase().includes(v.toLowerCase()))
                if (v && hits.length > 0 && !hits.includes(d.timeZone)) set({ timeZone: hits[0]! })
              }}
            />
          </label>
          <label>
            Time zone <span class="muted">({zoneMatches.length} shown)</span>
            <select
              value={d.timeZone}
              onChange={(e) => set({ timeZone: e.currentTarget.value })}
              {...attrs('tz', 'timeZone')}
            >
              {(zoneMatches.includes(d.timeZone) ? zoneMatches : [d.timeZone, ...zoneMatches]).map((z) => (
                <option key={z} value={z}>
                  {z}
                </option>
              ))}
            </select>
            <FieldError id="we-tz" message={err('timeZone')} />
          </label>
        </div>
      </fieldset>
      <fieldset>
        <legend>Recurrence, on the zone’s wall clock</legend>
        <div class="inline-checks">
          <label class="check">
            <input type="radio" name="kind" checked={d.kind === 'rrule'} onChange={() => set({ kind: 'rrule' })} />{' '}
            RRULE
          </label>
          <label class="check">
            <input type="radio" name="kind" checked={d.kind === 'cron'} onChange={() => set({ kind: 'cron' })} /> cron
          </label>
        </div>
        {d.kind === 'rrule' ? (
          <div class="grid2">
            <label>
              RRULE <span class="muted">(FREQ=DAILY|WEEKLY|MONTHLY, BYDAY, BYHOUR, BYMINUTE…)</span>
              <input
                class="mono"
                value={d.rrule}
                required
                onInput={(e) => set({ rrule: e.currentTarget.value })}
                {...attrs('rrule', 'recurrence.rrule')}
              />
              <FieldError id="we-rrule" message={err('recurrence.rrule')} />
            </label>
            <label>
              First start (DTSTART, local)
              <input
                type="datetime-local"
                value={d.dtstart}
                required
                onInput={(e) => set({ dtstart: e.currentTarget.value.slice(0, 16) })}
                {...attrs('dtstart', 'recurrence.dtstart')}
              />
              <FieldError id="we-dtstart" message={err('recurrence.dtstart')} />
            </label>
          </div>
        ) : (
          <label>
            cron <span class="muted">(minute hour day-of-month month day-of-week)</span>
            <input
              class="mono"
              value={d.cron}
              required
              onInput={(e) => set({ cron: e.currentTarget.value })}
              {...attrs('cron', 'recurrence.cron')}
            />
            <FieldError id="we-cron" message={err('recurrence.cron')} />
          </label>
        )}
        {err('recurrence') && !err('recurrence.rrule', 'recurrence.dtstart', 'recurrence.cron') ? (
          <FieldError id="we-rec" message={err('recurrence')} />
        ) : null}
      </fieldset>
      <div class="grid2">
        <label>
          Duration (minutes, on the wall clock)
          <input
            type="number"
            min={1}
            max={10080}
            value={d.duration}
            required
            onInput={(e) => set({ duration: e.currentTarget.value })}
            {...attrs('duration', 'durationMinutes')}
          />
          <FieldError id="we-duration" message={err('durationMinutes')} />
        </label>
        <label>
          Excluded dates <span class="muted">(YYYY-MM-DD, comma-separated; local)</span>
          <input
            value={d.exclusions}
            placeholder="2026-12-24, 2026-12-31"
            onInput={(e) => set({ exclusions: e.currentTarget.value })}
            {...attrs('exclusions', 'exclusions')}
          />
          <FieldError id="we-exclusions" message={err('exclusions')} />
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={d.allowReboot}
            onChange={(e) => set({ allowReboot: e.currentTarget.checked })}
          />{' '}
          Devices may reboot in this window
        </label>
      </div>
      {unplaced ? (
        <ErrorBox error={error} title={saveError ? 'The window was not saved' : 'The window is not valid'} />
      ) : null}
      <div class="actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy || !!previewError}>
          {busy ? 'Saving…' : 'Save window'}
        </button>
      </div>
      <section aria-labelledby="preview-title" class="preview">
        <h3 id="preview-title">Next occurrences</h3>
        <div class="toolbar">
          <label>
            From (date)
            <input type="date" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
          </label>
          <label>
            How many
            <input type="number" min={1} max={50} value={count} onInput={(e) => setCount(e.currentTarget.value)} />
          </label>
        </div>
        {previewError ? (
          <p class="muted">No preview while the window is invalid ({(previewError as ApiError).message}).</p>
        ) : null}
        {preview ? (
          <Calendar occurrences={preview} durationMinutes={candidate.durationMinutes} zone={candidate.timeZone} />
        ) : null}
      </section>
    </form>
  )
}

/**
 * A month at a glance (Monday first): days with an opening are marked, DST days too. Hidden
 * from screen readers: the table next to it says the same in words.
 */
function MonthGrid({ ym, days }: { ym: string; days: Map<number, boolean> }) {
  const [y, m] = ym.split('-').map(Number) as [number, number]
  const lead = (new Date(Date.UTC(y, m - 1, 1)).getUTCDay() + 6) % 7
  const count = new Date(Date.UTC(y, m, 0)).getUTCDate()
  const cells: Array<number | null> = [
    ...Array<null>(lead).fill(null),
    ...Array.from({ length: count }, (_, i) => i + 1),
  ]
  return (
    <div class="month-grid" aria-hidden="true">
      {['Mo', 'Tu', 'We', 'Th', 'Fr', 'Sa', 'Su'].map((d) => (
        <span key={d} class="month-head">
          {d}
        </span>
      ))}
      {cells.map((d, i) =>
        d === null ? (
          <span key={`e${i}`} />
        ) : (
          <span key={d} class={days.has(d) ? (days.get(d) ? 'day open dst' : 'day open') : 'day'}>
            {d}
          </span>
        ),
      )}
    </div>
  )
}

/** On a DST night a window opens and closes by the wall clock, so it is shorter or longer. */
function dstLength(elapsed: number, duration: number, dst: boolean): string | undefined {
  if (!dst || elapsed === duration) return undefined
  return elapsed < duration
    ? `${minutesText(duration - elapsed)} shorter (the skipped hour)`
    : `${minutesText(elapsed - duration)} longer (the repeated hour)`
}

const offsetOf = (local: string) => local.slice(16) || '+00:00'
const offsetMinutes = (local: string) => {
  const m = /([+-])(\d\d):(\d\d)$/.exec(local)
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0
}

/**
 * The occurrences grouped by month: each with its local start and end in the window's zone
 * (with the UTC offset) and in the browser's time; a DST change (offset differs from the
 * previous occurrence, or changes while the window is open) is flagged and explained.
 */
function Calendar({
  occurrences,
  durationMinutes,
  zone,
}: {
  occurrences: Occurrence[]
  durationMinutes: number
  zone: string
}) {
  if (occurrences.length === 0) return <p class="muted">This window never opens again.</p>
  const months = new Map<string, Array<{ o: Occurrence; i: number }>>()
  occurrences.forEach((o, i) => {
    const m = o.startLocal.slice(0, 7)
    months.set(m, [...(months.get(m) ?? []), { o, i }])
  })
  const monthName = (ym: string) =>
    new Date(`${ym}-15T12:00:00Z`).toLocaleDateString(undefined, { month: 'long', year: 'numeric', timeZone: 'UTC' })
  const weekday = (local: string) =>
    new Date(`${local.slice(0, 10)}T12:00:00Z`).toLocaleDateString(undefined, { weekday: 'short', timeZone: 'UTC' })
  return (
    <div class="calendar" data-testid="window-preview">
      {[...months].map(([ym, list]) => (
        <div key={ym} class="table-wrap month">
          <MonthGrid
            ym={ym}
            days={
              new Map(
                list.map(({ o, i }) => {
                  const prev = occurrences[i - 1]
                  const dst =
                    offsetOf(o.startLocal) !== offsetOf(o.endLocal) ||
                    (prev !== undefined && offsetOf(prev.startLocal) !== offsetOf(o.startLocal))
                  return [Number(o.startLocal.slice(8, 10)), dst]
                }),
              )
            }
          />
          <table class="compact">
            <caption>{monthName(ym)}</caption>
            <thead>
              <tr>
                <th scope="col">Day</th>
                <th scope="col">Opens ({zone})</th>
                <th scope="col">Closes</th>
                <th scope="col">Open for</th>
                <th scope="col">Your time ({BROWSER_ZONE})</th>
                <th scope="col">Note</th>
              </tr>
            </thead>
            <tbody>
              {list.map(({ o, i }) => {
                const prev = occurrences[i - 1]
                const elapsed = Math.round((Date.parse(o.end) - Date.parse(o.start)) / 60_000)
                const shift = offsetMinutes(o.endLocal) - offsetMinutes(o.startLocal)
                const changed = prev && offsetOf(prev.startLocal) !== offsetOf(o.startLocal)
                const notes: string[] = []
                if (shift > 0) notes.push(`clocks go forward ${minutesText(shift)} while open`)
                if (shift < 0) notes.push(`clocks go back ${minutesText(-shift)} while open`)
                if (changed && shift === 0)
                  notes.push(`UTC offset now ${offsetOf(o.startLocal)} (was ${offsetOf(prev.startLocal)})`)
                if (dstLength(elapsed, durationMinutes, shift !== 0 || !!changed))
                  notes.push(dstLength(elapsed, durationMinutes, true)!)
                if (elapsed !== durationMinutes && shift === 0 && !changed) notes.push('cut short by the next opening')
                const dst = shift !== 0 || changed
                return (
                  <tr key={o.start} class={dst ? 'dst' : ''}>
                    <th scope="row">
                      {weekday(o.startLocal)} {o.startLocal.slice(0, 10)}
                    </th>
                    <td>
                      <time dateTime={o.start}>{o.startLocal.slice(11, 16)}</time>{' '}
                      <span class="muted">UTC{offsetOf(o.startLocal)}</span>
                    </td>
                    <td>
                      <time dateTime={o.end}>
                        {o.endLocal.slice(0, 10) === o.startLocal.slice(0, 10)
                          ? o.endLocal.slice(11, 16)
                          : o.endLocal.slice(0, 16).replace('T', ' ')}
                      </time>{' '}
                      <span class="muted">UTC{offsetOf(o.endLocal)}</span>
                    </td>
                    <td>
                      {minutesText(elapsed)}
                      {elapsed !== durationMinutes ? (
                        <span class="muted"> (of {minutesText(durationMinutes)})</span>
                      ) : null}
                    </td>
                    <td>
                      {localTime(o.start)} – {localTime(o.end)}
                    </td>
                    <td>{dst ? <strong class="dst-note">DST: {notes.join('; ')}</strong> : notes.join('; ')}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </div>
      ))}
    </div>
  )
}
