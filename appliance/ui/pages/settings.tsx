import type { ComponentChildren } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import { ApiError, api, can, post, type Role, session } from '../api.ts'
import { ActionButton, ConfirmButton, ErrorBox, Loading, PageTitle } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { ago, bytes, dateTime } from '../format.ts'

// ---- Shapes (appliance/upstream/upstream-config.ts, the user, token and certificate routes) ----

interface PatchswarmFeed {
  id: string
  kind: 'patchswarm'
  url: string
  publicKeys?: string[]
  maxBytes?: number
}
interface FolderFeed {
  id: string
  kind: 'folder'
  path: string
  publicKeys?: string[]
  maxBytes?: number
}
interface AptFeed {
  id: string
  kind: 'apt'
  baseUrl: string
  suite: string
  components: string[]
  architectures: Array<'amd64' | 'arm64' | 'all'>
  keyring: string[]
  packages?: string[]
  vendor?: string
  product?: string
  classification?: string
  severity?: string
  requireValidUntil?: boolean
  [more: string]: unknown
}
type Feed = PatchswarmFeed | FolderFeed | AptFeed

interface WanRule {
  days: string[]
  start: string
  end: string
  bytesPerSecond: number
}

interface UpstreamConfig {
  feeds: Feed[]
  syncIntervalMinutes: number
  wan: {
    schedule: { timeZone: string; defaultBytesPerSecond: number; rules: WanRule[] }
    downloader?: Record<string, unknown>
  }
  cache: { quotaBytes: number }
  autoDownload: { severities: string[]; classifications: string[]; emergency: boolean }
}

interface UserView {
  username: string
  role: Role
  disabled: boolean
  createdAt: string
  createdBy: string
  passwordChangedAt: string
  updatedAt?: string
}

interface ApiTokenView {
  id: string
  name: string
  role: Role
  createdAt: string
  createdBy: string
  expiresAt?: string
  lastUsedAt?: string
}

interface EnrollmentToken {
  token: string
  expiresAt: string
  rootFingerprint?: string
  webCaFingerprint256?: string | null
  httpsUrl?: string | null
  webUrls?: string[]
}

interface CertificateView {
  caFingerprint256: string | null
  caAvailable: boolean
  serverFingerprint256: string
  subject: string
  issuer: string
  notBefore: string
  notAfter: string
  dnsNames: string[]
  ipAddresses: string[]
  imported: boolean
  warnings: string[]
  httpsUrl: string | null
  webUrls: string[]
}

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const
const SEVERITY_NAMES = ['critical', 'high', 'medium', 'low', 'none'] as const
const CLASSIFICATIONS = ['security', 'critical', 'bugfix', 'feature', 'definition', 'driver', 'tool', 'other'] as const
const ROLES: Role[] = ['viewer', 'operator', 'admin']
const GIB = 1024 ** 3

const put = <T,>(path: string, body: unknown) => api<T>('PUT', path, body)
const del = (path: string) => api<void>('DELETE', path)

export function SettingsPage() {
  if (!can('admin'))
    return (
      <section>
        <PageTitle>Settings</PageTitle>
        <p class="notice" role="note">
          Settings are for administrators: WAN caps and schedule, feeds, accounts, API and enrollment tokens and the
          HTTPS certificate. Your role ({session.value?.legacy ? 'read-only' : session.value?.role}) may not change
          them; ask an administrator.
        </p>
      </section>
    )
  return (
    <section>
      <PageTitle>Settings</PageTitle>
      <nav aria-label="Settings sections" class="toc">
        <ul>
          {(
            [
              ['settings-upstream', 'Upstream'],
              ['settings-users', 'Users'],
              ['settings-api-tokens', 'API tokens'],
              ['settings-enrollment', 'Enrollment tokens'],
              ['settings-certificates', 'Certificates'],
            ] as const
          ).map(([id, label]) => (
            <li key={id}>
              <button type="button" onClick={jump(id)}>
                {label}
              </button>
            </li>
          ))}
        </ul>
      </nav>
      <UpstreamSection />
      <UsersSection />
      <ApiTokensSection />
      <EnrollmentSection />
      <CertificatesSection />
    </section>
  )
}

/** Moves to a section without touching the hash (the router owns it). */
const jump = (id: string) => () => {
  const el = document.getElementById(id)
  el?.scrollIntoView()
  el?.focus({ preventScroll: true })
}

function Section({ id, title, children }: { id: string; title: string; children: ComponentChildren }) {
  return (
    <section class="settings-section" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>
        <span id={id} tabIndex={-1}>
          {title}
        </span>
      </h2>
      {children}
    </section>
  )
}

// ---- Upstream ----

/** The configuration paths a server error names (`/wan/schedule/defaultBytesPerSecond`, `body/feeds/0/url`). */
function errorPaths(message: string): string[] {
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
function FieldError({ error, path, feedId }: { error: ApiError | undefined; path: string; feedId?: string }) {
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

/** PEM blocks (public keys, armored OpenPGP keys) and base64 keys from a text area. */
function splitKeys(text: string): string[] {
  const blocks = text.match(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g) ?? []
  let rest = text
  for (const b of blocks) rest = rest.replace(b, ' ')
  return [...blocks.map((b) => b.trim()), ...rest.split(/\s+/).filter((s) => s !== '')]
}
const words = (text: string) => text.split(/[\s,]+/).filter((s) => s !== '')

function newFeed(kind: Feed['kind'], n: number): Feed {
  const id = `${kind}-${n}`
  if (kind === 'patchswarm') return { id, kind, url: 'https://' }
  if (kind === 'folder') return { id, kind, path: '/media/usb' }
  return {
    id,
    kind,
    baseUrl: 'https://deb.debian.org/debian-security',
    suite: 'bookworm-security',
    components: ['main'],
    architectures: ['amd64'],
    keyring: [],
  }
}

function UpstreamSection() {
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

function SyncNow() {
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

function FeedEditor({
  feed,
  index,
  error,
  last,
  onChange,
  onRemove,
}: {
  feed: Feed
  index: number
  error: ApiError | undefined
  last: { lastSyncAt?: string; lastError?: { message: string } } | undefined
  onChange: (f: Feed) => void
  onRemove: () => void
}) {
  const text = (e: Event) => (e.currentTarget as HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement).value
  const path = `feeds/${index}`
  const set = (patch: Record<string, unknown>) => {
    const next = { ...feed, ...patch } as Record<string, unknown>
    for (const [k, v] of Object.entries(next)) if (v === undefined) delete next[k]
    onChange(next as unknown as Feed)
  }
  const keysText = (keys: string[] | undefined) => (keys ?? []).join('\n\n')
  const name = `Feed ${index + 1} (${feed.kind})`
  return (
    <fieldset class="feed">
      <legend>{name}</legend>
      {last ? (
        <p class="muted">
          Last sync {ago(last.lastSyncAt)}
          {last.lastError ? <span class="error-inline"> — {last.lastError.message}</span> : null}
        </p>
      ) : null}
      <div class="grid2">
        <label>
          Feed id
          <input type="text" required value={feed.id} onInput={(e) => set({ id: text(e) })} />
          <FieldError error={error} path={`${path}/id`} />
        </label>
        {feed.kind === 'patchswarm' ? (
          <label>
            Feed URL
            <input type="url" required value={feed.url} onInput={(e) => set({ url: text(e) })} />
            <FieldError error={error} path={`${path}/url`} />
          </label>
        ) : null}
        {feed.kind === 'folder' ? (
          <label>
            Folder (absolute path holding feed.json)
            <input type="text" required value={feed.path} onInput={(e) => set({ path: text(e) })} />
            <FieldError error={error} path={`${path}/path`} />
          </label>
        ) : null}
        {feed.kind === 'apt' ? (
          <>
            <label>
              Repository URL
              <input type="url" required value={feed.baseUrl} onInput={(e) => set({ baseUrl: text(e) })} />
              <FieldError error={error} path={`${path}/baseUrl`} />
            </label>
            <label>
              Suite
              <input type="text" required value={feed.suite} onInput={(e) => set({ suite: text(e) })} />
              <FieldError error={error} path={`${path}/suite`} />
            </label>
            <label>
              Components (space-separated)
              <input
                type="text"
                required
                value={feed.components.join(' ')}
                onInput={(e) => set({ components: words(text(e)) })}
              />
              <FieldError error={error} path={`${path}/components`} />
            </label>
            <label>
              Packages to offer (space-separated; empty = all)
              <input
                type="text"
                value={(feed.packages ?? []).join(' ')}
                onInput={(e) => {
                  const p = words(text(e))
                  set({ packages: p.length > 0 ? p : undefined })
                }}
              />
              <FieldError error={error} path={`${path}/packages`} />
            </label>
            <label>
              Severity given to its packages
              <select value={feed.severity ?? ''} onChange={(e) => set({ severity: text(e) || undefined })}>
                <option value="">default (none)</option>
                {SEVERITY_NAMES.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Classification given to its packages
              <select value={feed.classification ?? ''} onChange={(e) => set({ classification: text(e) || undefined })}>
                <option value="">default (other)</option>
                {CLASSIFICATIONS.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
          </>
        ) : null}
      </div>
      {feed.kind === 'apt' ? (
        <>
          <fieldset class="days">
            <legend>Architectures</legend>
            {(['amd64', 'arm64', 'all'] as const).map((a) => (
              <label class="check" key={a}>
                <input
                  type="checkbox"
                  checked={feed.architectures.includes(a)}
                  onChange={(e) =>
                    set({
                      architectures: (['amd64', 'arm64', 'all'] as const).filter((x) =>
                        x === a ? (e.currentTarget as HTMLInputElement).checked : feed.architectures.includes(x),
                      ),
                    })
                  }
                />
                {a}
              </label>
            ))}
          </fieldset>
          <label class="check">
            <input
              type="checkbox"
              checked={feed.requireValidUntil ?? false}
              onChange={(e) => set({ requireValidUntil: (e.currentTarget as HTMLInputElement).checked || undefined })}
            />
            Require Valid-Until in the Release file
          </label>
          <FieldError error={error} path={`${path}/architectures`} />
          <label>
            Signing keys (ASCII-armored OpenPGP public keys)
            <textarea
              rows={4}
              required
              value={keysText(feed.keyring)}
              onChange={(e) => set({ keyring: splitKeys(text(e)) })}
            />
            <FieldError error={error} path={`${path}/keyring`} />
          </label>
        </>
      ) : (
        <label>
          Trusted Ed25519 keys (PEM or base64, one per line; empty = unsigned feed)
          <textarea
            rows={3}
            value={keysText(feed.publicKeys)}
            onChange={(e) => {
              const k = splitKeys(text(e))
              set({ publicKeys: k.length > 0 ? k : undefined })
            }}
          />
          <FieldError error={error} path={`${path}/publicKeys`} />
        </label>
      )}
      <FieldError error={error} path={path} feedId={feed.id} />
      <div class="actions">
        <button type="button" onClick={onRemove} aria-label={`Remove ${name}`}>
          Remove feed
        </button>
      </div>
    </fieldset>
  )
}

// ---- Users ----

function UsersSection() {
  const res = useApi<{ users: UserView[] }>('/api/v1/users', () => false)
  const me = session.value?.username
  const [form, setForm] = useState({ username: '', password: '', role: 'viewer' as Role })
  const [error, setError] = useState<unknown>(undefined)
  const [done, setDone] = useState<string | undefined>(undefined)
  const create = async (e: Event) => {
    e.preventDefault()
    setError(undefined)
    setDone(undefined)
    try {
      await post('/api/v1/users', form)
      setDone(`Created ${form.username} (${form.role}).`)
      setForm({ username: '', password: '', role: 'viewer' })
      res.reload()
    } catch (err) {
      setError(err)
    }
  }
  const change = async (username: string, body: Record<string, unknown>) => {
    await put(`/api/v1/users/${encodeURIComponent(username)}`, body)
    res.reload()
  }
  return (
    <Section id="settings-users" title="Users">
      <ErrorBox error={res.error} title="Could not load the accounts" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Accounts</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
                <th scope="col">Password changed</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {res.data.users.map((u) => (
                <tr key={u.username}>
                  <th scope="row">
                    {u.username}
                    {u.username === me ? <span class="muted"> (you)</span> : null}
                  </th>
                  <td>
                    <RoleSelect user={u} onChange={(role) => change(u.username, { role })} />
                  </td>
                  <td>{u.disabled ? 'disabled' : 'active'}</td>
                  <td>
                    {dateTime(u.createdAt)} <span class="muted">by {u.createdBy}</span>
                  </td>
                  <td>{ago(u.passwordChangedAt)}</td>
                  <td>
                    <div class="decide">
                      <ActionButton
                        label={u.disabled ? `Enable ${u.username}` : `Disable ${u.username}`}
                        onClick={() => change(u.username, { disabled: !u.disabled })}
                      />
                      <ConfirmButton
                        label={`Reset password of ${u.username}`}
                        title={`New password for ${u.username}`}
                        message="The account's sessions end; tell the user the new password."
                        confirmLabel="Set password"
                        extra={
                          <label>
                            New password (12 to 256 characters)
                            <input
                              name="password"
                              type="password"
                              required
                              minLength={12}
                              maxLength={256}
                              autoComplete="new-password"
                            />
                          </label>
                        }
                        onConfirm={(f) => change(u.username, { password: String(f.get('password')) })}
                      />
                      <ConfirmButton
                        label={`Delete ${u.username}`}
                        title={`Delete the account ${u.username}?`}
                        message="The account and its sessions are removed. The audit log keeps what it did."
                        danger
                        disabled={u.username === me}
                        onConfirm={async () => {
                          await del(`/api/v1/users/${encodeURIComponent(u.username)}`)
                          res.reload()
                        }}
                      />
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <form class="card stack" onSubmit={create} aria-labelledby="new-user-h">
        <h3 id="new-user-h">New account</h3>
        <div class="grid2">
          <label>
            New user name
            <input
              type="text"
              required
              autoComplete="off"
              value={form.username}
              onInput={(e) => setForm({ ...form, username: (e.currentTarget as HTMLInputElement).value })}
            />
          </label>
          <label>
            Role
            <select
              value={form.role}
              onChange={(e) => setForm({ ...form, role: (e.currentTarget as HTMLSelectElement).value as Role })}
            >
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
          <label>
            Initial password (12 to 256 characters)
            <input
              type="password"
              required
              minLength={12}
              maxLength={256}
              autoComplete="new-password"
              value={form.password}
              onInput={(e) => setForm({ ...form, password: (e.currentTarget as HTMLInputElement).value })}
            />
          </label>
        </div>
        <ErrorBox error={error} title="Account not created" />
        <div class="actions">
          <button type="submit" class="primary">
            Create account
          </button>
          <span role="status">{done ?? ''}</span>
        </div>
      </form>
      <OwnPassword />
    </Section>
  )
}

function RoleSelect({ user, onChange }: { user: UserView; onChange: (role: Role) => Promise<void> }) {
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  return (
    <>
      <select
        aria-label={`Role of ${user.username}`}
        value={user.role}
        disabled={busy}
        onChange={async (e) => {
          const el = e.currentTarget as HTMLSelectElement
          setBusy(true)
          setError(undefined)
          try {
            await onChange(el.value as Role)
          } catch (err) {
            el.value = user.role
            setError(err)
          } finally {
            setBusy(false)
          }
        }}
      >
        {ROLES.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
      <ErrorBox error={error} title="Role not changed" />
    </>
  )
}

function OwnPassword() {
  const [current, setCurrent] = useState('')
  const [next, setNext] = useState('')
  const [again, setAgain] = useState('')
  const [error, setError] = useState<unknown>(undefined)
  const [done, setDone] = useState(false)
  if (session.value?.legacy) return null
  return (
    <form
      class="card stack"
      aria-labelledby="own-pw-h"
      onSubmit={async (e) => {
        e.preventDefault()
        setError(undefined)
        setDone(false)
        if (next !== again) {
          setError(new ApiError(0, 'UI', 'the new passwords differ'))
          return
        }
        try {
          await post('/api/v1/auth/password', { current, password: next })
          setCurrent('')
          setNext('')
          setAgain('')
          setDone(true)
        } catch (err) {
          setError(err)
        }
      }}
    >
      <h3 id="own-pw-h">Your password</h3>
      <div class="grid2">
        <label>
          Current password
          <input
            type="password"
            required
            autoComplete="current-password"
            value={current}
            onInput={(e) => setCurrent((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          New password
          <input
            type="password"
            required
            minLength={12}
            maxLength={256}
            autoComplete="new-password"
            value={next}
            onInput={(e) => setNext((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          New password again
          <input
            type="password"
            required
            autoComplete="new-password"
            value={again}
            onInput={(e) => setAgain((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
      </div>
      <ErrorBox error={error} title="Password not changed" />
      <div class="actions">
        <button type="submit">Change my password</button>
        <span role="status">{done ? 'Password changed; your other sessions were ended.' : ''}</span>
      </div>
    </form>
  )
}

// ---- API tokens ----

/** A secret shown once, with a copy button. */
function Secret({ label, value, note }: { label: string; value: string; note: ComponentChildren }) {
  const [copied, setCopied] = useState<string>('')
  const ref = useRef<HTMLTextAreaElement>(null)
  return (
    <div class="secret">
      <label>
        {label}
        <textarea ref={ref} class="mono" readOnly rows={Math.min(6, Math.ceil(value.length / 90) + 1)} value={value} />
      </label>
      <p class="muted">{note}</p>
      <div class="actions">
        <button
          type="button"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(value)
              setCopied('Copied to the clipboard.')
            } catch {
              ref.current?.select()
              setCopied('Selected: press Ctrl+C to copy.')
            }
          }}
        >
          Copy
        </button>
        <span role="status">{copied}</span>
      </div>
    </div>
  )
}

function ApiTokensSection() {
  const res = useApi<{ tokens: ApiTokenView[] }>('/api/v1/api-tokens', () => false)
  const [name, setName] = useState('')
  const [role, setRole] = useState<Role>('viewer')
  const [expires, setExpires] = useState('')
  const [error, setError] = useState<unknown>(undefined)
  const [created, setCreated] = useState<(ApiTokenView & { token: string }) | undefined>(undefined)
  return (
    <Section id="settings-api-tokens" title="API tokens">
      <p class="muted">
        For scripts and the MSP: sent as <code>Authorization: Bearer psw_…</code>. The secret is shown once, when the
        token is created.
      </p>
      <ErrorBox error={res.error} title="Could not load the API tokens" />
      {res.data && res.data.tokens.length === 0 ? <p class="muted">No API token.</p> : null}
      {res.data && res.data.tokens.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">API tokens</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">Last used</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {res.data.tokens.map((t) => (
                <tr key={t.id}>
                  <th scope="row">
                    {t.name}
                    <div class="muted mono">{t.id}</div>
                  </th>
                  <td>{t.role}</td>
                  <td>
                    {dateTime(t.createdAt)} <span class="muted">by {t.createdBy}</span>
                  </td>
                  <td>{t.expiresAt ? dateTime(t.expiresAt) : 'never'}</td>
                  <td>{t.lastUsedAt ? ago(t.lastUsedAt) : 'never'}</td>
                  <td>
                    <ConfirmButton
                      label={`Revoke ${t.name}`}
                      title={`Revoke the API token ${t.name}?`}
                      message="Scripts using it are refused from now on."
                      danger
                      onConfirm={async () => {
                        await del(`/api/v1/api-tokens/${encodeURIComponent(t.id)}`)
                        if (created?.id === t.id) setCreated(undefined)
                        res.reload()
                      }}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <form
        class="card stack"
        aria-labelledby="new-token-h"
        onSubmit={async (e) => {
          e.preventDefault()
          setError(undefined)
          setCreated(undefined)
          try {
            const iso = expires ? new Date(expires).toISOString() : undefined
            const t = await post<ApiTokenView & { token: string }>('/api/v1/api-tokens', {
              name,
              role,
              ...(iso ? { expiresAt: iso } : {}),
            })
            setCreated(t)
            setName('')
            setExpires('')
            res.reload()
          } catch (err) {
            setError(err)
          }
        }}
      >
        <h3 id="new-token-h">New API token</h3>
        <div class="grid2">
          <label>
            Token name
            <input
              type="text"
              required
              maxLength={100}
              value={name}
              onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
              placeholder="e.g. msp-monitoring"
            />
          </label>
          <label>
            Token role
            <select value={role} onChange={(e) => setRole((e.currentTarget as HTMLSelectElement).value as Role)}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
          <label>
            Expires (optional)
            <input
              type="datetime-local"
              value={expires}
              onInput={(e) => setExpires((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
        </div>
        <ErrorBox error={error} title="Token not created" />
        <div class="actions">
          <button type="submit" class="primary">
            Create API token
          </button>
        </div>
      </form>
      {created ? (
        <Secret
          label={`Secret of the API token ${created.name}`}
          value={created.token}
          note="Copy it now: it is not shown again (the appliance keeps only its hash)."
        />
      ) : null}
    </Section>
  )
}

// ---- Enrollment tokens ----

function EnrollmentSection() {
  const [label, setLabel] = useState('')
  const [ttl, setTtl] = useState(24)
  const [error, setError] = useState<unknown>(undefined)
  const [token, setToken] = useState<EnrollmentToken | undefined>(undefined)
  const [url, setUrl] = useState('')
  const urls = token ? [...new Set([...(token.webUrls ?? []), ...(token.httpsUrl ? [token.httpsUrl] : [])])] : []
  if (urls.length === 0 && location.protocol === 'https:') urls.push(location.origin)
  const chosen = url && urls.includes(url) ? url : (urls[0] ?? location.origin)
  const command = token
    ? [
        'patchswarm agent enroll',
        `--appliance ${chosen}`,
        `--token ${token.token}`,
        ...(token.rootFingerprint ? [`--root-fingerprint ${token.rootFingerprint}`] : []),
        ...(token.webCaFingerprint256 ? [`--web-ca-fingerprint ${token.webCaFingerprint256}`] : []),
        '--data /var/lib/patchswarm-agent',
      ].join(' ')
    : ''
  return (
    <Section id="settings-enrollment" title="Enrollment tokens">
      <p class="muted">
        A one-time token enrolls one endpoint. The command pins the appliance's root certificate and web CA, so the
        agent trusts nothing else.
      </p>
      <form
        class="card stack"
        aria-labelledby="new-enroll-h"
        onSubmit={async (e) => {
          e.preventDefault()
          setError(undefined)
          setToken(undefined)
          try {
            setToken(
              await post<EnrollmentToken>('/api/v1/admin/tokens', {
                ttlHours: ttl,
                ...(label.trim() ? { label: label.trim() } : {}),
              }),
            )
          } catch (err) {
            setError(err)
          }
        }}
      >
        <h3 id="new-enroll-h">New enrollment token</h3>
        <div class="grid2">
          <label>
            Label (optional, e.g. the device)
            <input
              type="text"
              maxLength={100}
              value={label}
              onInput={(e) => setLabel((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <label>
            Valid for (hours, 1 to 720)
            <input
              type="number"
              min={1}
              max={720}
              step={1}
              required
              value={ttl}
              onInput={(e) => setTtl(Number((e.currentTarget as HTMLInputElement).value))}
            />
          </label>
        </div>
        <ErrorBox error={error} title="Token not created" />
        <div class="actions">
          <button type="submit" class="primary">
            Create enrollment token
          </button>
        </div>
      </form>
      {token ? (
        <div class="card stack">
          <p>
            Single use, expires {dateTime(token.expiresAt)}. Root certificate SHA-256{' '}
            <code class="wrap">{token.rootFingerprint ?? '—'}</code>; web CA SHA-256{' '}
            <code class="wrap">{token.webCaFingerprint256 ?? 'none (imported certificate)'}</code>.
          </p>
          {urls.length > 1 ? (
            <label>
              Appliance address the endpoint reaches
              <select value={chosen} onChange={(e) => setUrl((e.currentTarget as HTMLSelectElement).value)}>
                {urls.map((u) => (
                  <option key={u} value={u}>
                    {u}
                  </option>
                ))}
              </select>
            </label>
          ) : null}
          <Secret label="Enrollment token" value={token.token} note="Shown once." />
          <Secret
            label="Enroll command"
            value={command}
            note="Run it on the endpoint as root (choose another --data directory if you like)."
          />
        </div>
      ) : null}
    </Section>
  )
}

// ---- Certificates ----

function CertificatesSection() {
  const res = useApi<CertificateView>('/api/v1/settings/certificate', () => false)
  const [renewed, setRenewed] = useState<string | undefined>(undefined)
  const c = res.data
  const daysLeft = c ? Math.floor((Date.parse(c.notAfter) - Date.now()) / 86_400_000) : 0
  return (
    <Section id="settings-certificates" title="Certificates">
      <ErrorBox error={res.error} title="Could not load the certificate" />
      {res.loading && !c ? <Loading /> : null}
      {c ? (
        <>
          <dl class="facts">
            <dt>Web CA SHA-256</dt>
            <dd class="mono wrap" data-testid="ca-fingerprint">
              {c.caFingerprint256 ?? 'unknown (imported without its CA)'}
            </dd>
            <dt>Web CA</dt>
            <dd>
              {c.caAvailable ? (
                <a href="/ca.crt" download="patchswarm-web-ca.crt">
                  Download the web CA (ca.crt)
                </a>
              ) : (
                '—'
              )}{' '}
              <span class="muted">Compare its fingerprint before importing it into browsers.</span>
            </dd>
            <dt>Server certificate</dt>
            <dd>
              {c.imported
                ? 'imported by an operator (never renewed automatically)'
                : "issued by the appliance's web CA"}
            </dd>
            <dt>Names</dt>
            <dd class="wrap">{[...c.dnsNames, ...c.ipAddresses].join(', ') || '—'}</dd>
            <dt>Subject</dt>
            <dd class="wrap">{c.subject}</dd>
            <dt>Issuer</dt>
            <dd class="wrap">{c.issuer}</dd>
            <dt>Valid</dt>
            <dd>
              {dateTime(c.notBefore)} to {dateTime(c.notAfter)}{' '}
              <span class={daysLeft < 30 ? 'error-inline' : 'muted'}>({daysLeft} days left)</span>
            </dd>
            <dt>Server SHA-256</dt>
            <dd class="mono wrap">{c.serverFingerprint256}</dd>
            <dt>HTTPS addresses</dt>
            <dd class="wrap">
              {[...new Set([...(c.webUrls ?? []), ...(c.httpsUrl ? [c.httpsUrl] : [])])].join(', ') || '—'}
            </dd>
          </dl>
          {c.warnings.map((w) => (
            <p key={w} class="error">
              {w}
            </p>
          ))}
          <div class="actions">
            <ConfirmButton
              label="Renew now"
              title="Renew the server certificate?"
              message={
                c.imported
                  ? 'This certificate was imported: renew it by importing a new one (patchswarm appliance cert import). The appliance refuses to replace it here.'
                  : "A new server certificate is issued from the same web CA, for this machine's current names and addresses. Browsers that trust the web CA keep trusting it; new connections get it at once."
              }
              confirmLabel="Renew"
              onConfirm={async () => {
                const next = await post<CertificateView>('/api/v1/settings/certificate/renew', {})
                setRenewed(`Renewed: valid until ${dateTime(next.notAfter)}.`)
                res.reload()
              }}
            />
            <span role="status">{renewed ?? ''}</span>
          </div>
        </>
      ) : null}
    </Section>
  )
}
