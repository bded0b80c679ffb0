import { useEffect, useState } from 'preact/hooks'
import { ApiError, post } from '../../api.ts'
import { ActionButton, ErrorBox, Loading } from '../../components.tsx'
import { is, useApi } from '../../data.ts'
import { bytes } from '../../format.ts'
import { FeedEditor, newFeed } from './feed-editor.tsx'
import { put } from './requests.ts'
import { Section } from './section.tsx'
import { CLASSIFICATIONS, DAYS, GIB, SEVERITY_NAMES, type UpstreamConfig } from './upstream-config.ts'
import { FieldError } from './upstream-field-error.tsx'

export function UpstreamSection() {
  const res = useApi<{ siteName: string; upstream: UpstreamConfig }>('/api/v1/settings', () => false)
  const [draft, setDraft] = useState<UpstreamConfig | undefined>(undefined)
  const [error, setError] = useState<ApiError | undefined>(undefined)
  const [saved, setSaved] = useState<string | undefined>(undefined)
  const [busy, setBusy] = useState(false)
  useEffect(() => {
    if (res.data && !draft) setDraft(structuredClone(res.data.upstream))
  }, [res.data, draft])
  const status = useApi<{ feeds: Array<{ feedId: string; lastSyncAt?: string; lastError?: { message: string } }> }>(
    '/api/v1/upstream',
    is('upstream'),
  )
  if (!draft)
    return (
      <Section id="settings-upstream" title="Upstream">
        <ErrorBox error={res.error} title="Could not load the settings" />
        {res.loading ? <Loading /> : null}
      </Section>
    )
  const d = draft
  const update = (fn: (c: UpstreamConfig) => void) => {
    const next = structuredClone(d)
    fn(next)
    setDraft(next)
    setSaved(undefined)
  }
  const num = (e: Event) => Number((e.currentTarget as HTMLInputElement).value)
  const text = (e: Event) => (e.currentTarget as HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement).value
  const checked = (e: Event) => (e.currentTarget as HTMLInputElement).checked
  const toggle = (list: string[], v: string, on: boolean) =>
    on ? [...new Set([...list, v])] : list.filter((x) => x !== v)
  const sched = d.wan.schedule
  const save = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setError(undefined)
    setSaved(undefined)
    try {
      const r = await put<{ upstream: UpstreamConfig }>('/api/v1/settings/upstream', d)
      setDraft(structuredClone(r.upstream))
      setSaved(`Saved at ${new Date().toLocaleTimeString()}: the running appliance uses the new settings.`)
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'UI', String(err)))
    } finally {
      setBusy(false)
    }
  }
  const lastSync = new Map((status.data?.feeds ?? []).map((f) => [f.feedId, f]))
  return (
    <Section id="settings-upstream" title="Upstream">
      <p class="muted">
        Site <strong>{res.data?.siteName}</strong>. Saved as a whole: the appliance checks every field, applies the
        change at once and records it in the audit log.
      </p>
      <form class="stack" onSubmit={save} aria-label="Upstream settings">
        <fieldset>
          <legend>WAN cap and schedule</legend>
          <div class="grid2">
            <label>
              Default WAN cap (bytes per second, 0 = unlimited)
              <input
                type="number"
                min={0}
                step={1}
                required
                value={sched.defaultBytesPerSecond}
                onInput={(e) => update((c) => (c.wan.schedule.defaultBytesPerSecond = num(e)))}
                aria-describedby="wan-default-human"
              />
              <span id="wan-default-human" class="muted">
                {sched.defaultBytesPerSecond === 0 ? 'unlimited' : `${bytes(sched.defaultBytesPerSecond)}/s`}
              </span>
              <FieldError error={error} path="wan/schedule/defaultBytesPerSecond" />
            </label>
            <label>
              Time zone of the schedule
              <input
                type="text"
                required
                value={sched.timeZone}
                onInput={(e) => update((c) => (c.wan.schedule.timeZone = text(e)))}
                placeholder="e.g. Europe/Berlin"
              />
              <FieldError error={error} path="wan/schedule/timeZone" />
            </label>
          </div>
          <h3>Time rules</h3>
          <p class="muted">The first rule that covers a moment sets the cap; an end before the start runs overnight.</p>
          {sched.rules.length === 0 ? <p class="muted">No rule: the default cap applies all week.</p> : null}
          <ol class="plain rules">
            {sched.rules.map((r, i) => (
              <li key={i} class="rule">
                <fieldset>
                  <legend>Rule {i + 1}</legend>
                  <div class="days">
                    {DAYS.map((day) => (
                      <label class="check" key={day}>
                        <input
                          type="checkbox"
                          checked={r.days.includes(day)}
                          onChange={(e) =>
                            update((c) => {
                              const rule = c.wan.schedule.rules[i]!
                              rule.days = DAYS.filter((x) => (x === day ? checked(e) : rule.days.includes(x)))
                            })
                          }
                        />
                        {day}
                      </label>
                    ))}
                  </div>
                  <div class="inline-fields">
                    <label>
                      From
                      <input
                        type="time"
                        required
                        value={r.start}
                        onInput={(e) => update((c) => (c.wan.schedule.rules[i]!.start = text(e)))}
                      />
                    </label>
                    <label>
                      Until
                      <input
                        type="text"
                        required
                        pattern="([01][0-9]|2[0-3]):[0-5][0-9]|24:00"
                        value={r.end}
                        onInput={(e) => update((c) => (c.wan.schedule.rules[i]!.end = text(e)))}
                        placeholder="HH:MM or 24:00"
                      />
                    </label>
                    <label>
                      Cap (bytes per second, 0 = unlimited)
                      <input
                        type="number"
                        min={0}
                        step={1}
                        required
                        value={r.bytesPerSecond}
                        onInput={(e) => update((c) => (c.wan.schedule.rules[i]!.bytesPerSecond = num(e)))}
                      />
                    </label>
                    <button
                      type="button"
                      onClick={() => update((c) => c.wan.schedule.rules.splice(i, 1))}
                      aria-label={`Remove rule ${i + 1}`}
                    >
                      Remove
                    </button>
                  </div>
                  <FieldError error={error} path={`wan/schedule/rules/${i}`} />
                </fieldset>
              </li>
            ))}
          </ol>
          <button
            type="button"
            onClick={() =>
              update((c) =>
                c.wan.schedule.rules.push({
                  days: ['mon', 'tue', 'wed', 'thu', 'fri'],
                  start: '08:00',
                  end: '18:00',
                  bytesPerSecond: 125_000,
                }),
              )
            }
          >
            Add rule
          </button>
          <FieldError error={error} path="wan/schedule/rules" />
        </fieldset>

        <fieldset>
          <legend>Feeds</legend>
          {d.feeds.length === 0 ? <p class="muted">No feed: patches come only from local ingest.</p> : null}
          <ol class="plain">
            {d.feeds.map((f, i) => (
              <li key={i}>
                <FeedEditor
                  feed={f}
                  index={i}
                  error={error}
                  last={lastSync.get(f.id)}
                  onChange={(next) => update((c) => (c.feeds[i] = next))}
                  onRemove={() => update((c) => c.feeds.splice(i, 1))}
                />
              </li>
            ))}
          </ol>
          <div class="actions">
            <button
              type="button"
              onClick={() => update((c) => c.feeds.push(newFeed('patchswarm', c.feeds.length + 1)))}
            >
              Add patchswarm feed
            </button>
            <button type="button" onClick={() => update((c) => c.feeds.push(newFeed('folder', c.feeds.length + 1)))}>
              Add folder feed
            </button>
            <button type="button" onClick={() => update((c) => c.feeds.push(newFeed('apt', c.feeds.length + 1)))}>
              Add APT feed
            </button>
          </div>
          <FieldError error={error} path="feeds" />
        </fieldset>

        <fieldset>
          <legend>Cache, sync and automatic downloads</legend>
          <div class="grid2">
            <label>
              Cache quota (GiB, 0 = no quota)
              <input
                type="number"
                min={0}
                step="any"
                required
                value={Math.round((d.cache.quotaBytes / GIB) * 1000) / 1000}
                onInput={(e) => update((c) => (c.cache.quotaBytes = Math.round(num(e) * GIB)))}
              />
              <FieldError error={error} path="cache" />
            </label>
            <label>
              Sync interval (minutes)
              <input
                type="number"
                min={1}
                max={10080}
                step={1}
                required
                value={d.syncIntervalMinutes}
                onInput={(e) => update((c) => (c.syncIntervalMinutes = num(e)))}
              />
              <FieldError error={error} path="syncIntervalMinutes" />
            </label>
          </div>
          <fieldset>
            <legend>Download automatically, without an operator asking</legend>
            <label class="check">
              <input
                type="checkbox"
                checked={d.autoDownload.emergency}
                onChange={(e) => update((c) => (c.autoDownload.emergency = checked(e)))}
              />
              Emergency patches
            </label>
            <p class="muted">Severities:</p>
            <div class="days">
              {SEVERITY_NAMES.map((s) => (
                <label class="check" key={s}>
                  <input
                    type="checkbox"
                    checked={d.autoDownload.severities.includes(s)}
                    onChange={(e) =>
                      update((c) => (c.autoDownload.severities = toggle(c.autoDownload.severities, s, checked(e))))
                    }
                  />
                  severity {s}
                </label>
              ))}
            </div>
            <p class="muted">Classifications:</p>
            <div class="days">
              {CLASSIFICATIONS.map((s) => (
                <label class="check" key={s}>
                  <input
                    type="checkbox"
                    checked={d.autoDownload.classifications.includes(s)}
                    onChange={(e) =>
                      update(
                        (c) => (c.autoDownload.classifications = toggle(c.autoDownload.classifications, s, checked(e))),
                      )
                    }
                  />
                  {s}
                </label>
              ))}
            </div>
            <FieldError error={error} path="autoDownload" />
          </fieldset>
        </fieldset>
        <ErrorBox error={error} title="Not saved" />
        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Saving…' : 'Save upstream settings'}
          </button>
          <button
            type="button"
            onClick={() => {
              setDraft(undefined)
              setError(undefined)
              res.reload()
            }}
          >
            Discard changes
          </button>
          <SyncNow />
        </div>
        <p role="status" class="ok-text">
          {saved ?? ''}
        </p>
      </form>
    </Section>
  )
}

export function SyncNow() {
  const [result, setResult] = useState<string | undefined>(undefined)
  return (
    <span class="action">
      <ActionButton
        label="Sync now"
        onClick={async () => {
          setResult(undefined)
          const r = await post<{
            reports: Array<{
              feedId: string
              ok: boolean
              artifacts: number
              added: number
              error?: { message: string }
            }>
          }>('/api/v1/upstream/sync', {})
          setResult(
            r.reports.length === 0
              ? 'No feed to sync.'
              : r.reports
                  .map((x) =>
                    x.ok
                      ? `${x.feedId}: ${x.artifacts} artifacts, ${x.added} new`
                      : `${x.feedId}: failed (${x.error?.message ?? 'error'})`,
                  )
                  .join('; '),
          )
        }}
      />
      <span role="status">{result ?? ''}</span>
    </span>
  )
}
