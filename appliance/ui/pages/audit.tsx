import { useState } from 'preact/hooks'
import { get, query } from '../api.ts'
import { ActionButton, ErrorBox, Loading, PageTitle } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { dateTime } from '../format.ts'

/** One record of the hash-chained audit log (GET /api/v1/audit). */
interface AuditEntry {
  seq: number
  time: string
  actor: { type: string; id: string }
  action: string
  target: { type: string; id: string }
  before?: unknown
  after?: unknown
  truncated?: string[]
  reason?: string
  requestId?: string
  prevHash: string
  hash: string
}

interface VerifyResult {
  ok: boolean
  checked: number
  head: { seq: number; hash: string }
  brokenAt?: number
  reason?: string
  message?: string
}

interface Filters {
  actorType: string
  actorId: string
  action: string
  targetType: string
  targetId: string
  from: string
  to: string
  order: 'asc' | 'desc'
}

const EMPTY: Filters = {
  actorType: '',
  actorId: '',
  action: '',
  targetType: '',
  targetId: '',
  from: '',
  to: '',
  order: 'desc',
}
const PAGE_SIZE = 50

/** `datetime-local` (the browser's time zone) → ISO, or undefined when empty or invalid. */
function isoOf(local: string): string | undefined {
  if (!local) return undefined
  const d = new Date(local)
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString()
}

/** The API's filter parameters (shared by the list and the exports). */
function filterParams(f: Filters): Record<string, string | undefined> {
  return {
    actorType: f.actorType || undefined,
    actorId: f.actorId.trim() || undefined,
    action: f.action.trim() || undefined,
    targetType: f.targetType.trim() || undefined,
    targetId: f.targetId.trim() || undefined,
    from: isoOf(f.from),
    to: isoOf(f.to),
  }
}

export function AuditPage() {
  const [draft, setDraft] = useState<Filters>(EMPTY)
  const [filters, setFilters] = useState<Filters>(EMPTY)
  // Cursors of the pages before the current one (`afterSeq` values; undefined = the first page).
  const [cursors, setCursors] = useState<Array<number | undefined>>([])
  const [cursor, setCursor] = useState<number | undefined>(undefined)
  const params = filterParams(filters)
  const res = useApi<{ records: AuditEntry[]; next?: number }>(
    `/api/v1/audit${query({ ...params, order: filters.order, limit: PAGE_SIZE, afterSeq: cursor })}`,
    is('audit'),
  )
  const set = (k: keyof Filters) => (e: Event) =>
    setDraft({ ...draft, [k]: (e.currentTarget as HTMLInputElement | HTMLSelectElement).value })
  const apply = (f: Filters) => {
    setFilters(f)
    setCursors([])
    setCursor(undefined)
  }
  const exportHref = (format: 'jsonl' | 'csv') => `/api/v1/audit/export${query({ ...params, format })}`
  const records = res.data?.records ?? []
  return (
    <section>
      <PageTitle>Audit</PageTitle>
      <p class="muted">
        Every decision, change, login and token in a hash-chained log: each record carries the hash of the one before
        it, so a changed or removed record breaks the chain.
      </p>
      <VerifyChain />
      <form
        class="filters"
        aria-label="Filter the audit log"
        onSubmit={(e) => {
          e.preventDefault()
          apply(draft)
        }}
      >
        <label>
          Actor type
          <select value={draft.actorType} onChange={set('actorType')}>
            <option value="">any</option>
            <option value="operator">operator (a person)</option>
            <option value="api-token">API token</option>
            <option value="agent">agent</option>
            <option value="system">system</option>
          </select>
        </label>
        <label>
          Actor
          <input type="text" value={draft.actorId} onInput={set('actorId')} placeholder="user name or id" />
        </label>
        <label>
          Action
          <input type="text" value={draft.action} onInput={set('action')} placeholder="e.g. patch or user.create" />
        </label>
        <label>
          Target type
          <input type="text" value={draft.targetType} onInput={set('targetType')} placeholder="e.g. bundle" />
        </label>
        <label>
          Target id
          <input type="text" value={draft.targetId} onInput={set('targetId')} />
        </label>
        <label>
          From
          <input type="datetime-local" value={draft.from} onInput={set('from')} />
        </label>
        <label>
          To
          <input type="datetime-local" value={draft.to} onInput={set('to')} />
        </label>
        <label>
          Order
          <select value={draft.order} onChange={set('order')}>
            <option value="desc">newest first</option>
            <option value="asc">oldest first</option>
          </select>
        </label>
        <div class="actions">
          <button type="submit" class="primary">
            Apply filters
          </button>
          <button
            type="button"
            onClick={() => {
              setDraft(EMPTY)
              apply(EMPTY)
            }}
          >
            Clear
          </button>
        </div>
      </form>
      <p class="actions">
        <span>Export what the filters select:</span>
        <a class="button" href={exportHref('jsonl')} download="patchswarm-audit.jsonl">
          Export JSONL
        </a>
        <a class="button" href={exportHref('csv')} download="patchswarm-audit.csv">
          Export CSV
        </a>
      </p>
      <ErrorBox error={res.error} title="Could not load the audit log" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data && records.length === 0 ? <p class="muted">No record matches.</p> : null}
      {records.length > 0 ? (
        <div class="table-wrap">
          <table class="audit">
            <caption class="sr-only">Audit records</caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">Time</th>
                <th scope="col">Actor</th>
                <th scope="col">Action</th>
                <th scope="col">Target</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {records.map((r) => (
                <tr key={r.seq}>
                  <td class="mono">{r.seq}</td>
                  <td>
                    <time dateTime={r.time}>{dateTime(r.time)}</time>
                  </td>
                  <td>
                    <span class="muted">{r.actor.type}</span> {r.actor.id}
                  </td>
                  <th scope="row">{r.action}</th>
                  <td class="wrap">
                    <span class="muted">{r.target.type}</span> {r.target.id}
                  </td>
                  <td>
                    {r.reason ? <div>Reason: {r.reason}</div> : null}
                    <Changes record={r} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <nav class="actions" aria-label="Audit pages">
        <button
          type="button"
          disabled={cursors.length === 0}
          onClick={() => {
            setCursor(cursors[cursors.length - 1])
            setCursors(cursors.slice(0, -1))
          }}
        >
          Previous page
        </button>
        <button
          type="button"
          disabled={res.data?.next === undefined}
          onClick={() => {
            setCursors([...cursors, cursor])
            setCursor(res.data?.next)
          }}
        >
          Next page
        </button>
        <span class="muted" role="status">
          Page {cursors.length + 1}
          {records.length > 0 ? `, records ${records[0]!.seq}…${records[records.length - 1]!.seq}` : ''}
        </span>
      </nav>
    </section>
  )
}

/** The "Verify chain" button and its result. */
function VerifyChain() {
  const [result, setResult] = useState<VerifyResult | undefined>(undefined)
  return (
    <div class="verify">
      <ActionButton
        label="Verify chain"
        onClick={async () => {
          setResult(undefined)
          setResult(await get<VerifyResult>('/api/v1/audit/verify'))
        }}
      />
      <div role="status" aria-live="polite">
        {result?.ok ? (
          <p class="ok-box">
            <strong>Chain intact:</strong> {result.checked} record{result.checked === 1 ? '' : 's'} checked, head #
            {result.head.seq} <code class="wrap">{result.head.hash}</code>
          </p>
        ) : null}
        {result && !result.ok ? (
          <div class="error">
            <strong>Chain broken</strong> at record #{result.brokenAt ?? '?'}
            {result.reason ? ` (${result.reason})` : ''}: {result.message ?? 'the log was changed'}. {result.checked}{' '}
            record{result.checked === 1 ? '' : 's'} checked.
          </div>
        ) : null}
      </div>
    </div>
  )
}

/** A value as short readable text. */
function show(v: unknown): string {
  if (v === undefined) return '—'
  if (v === null) return 'null'
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return JSON.stringify(v, null, 1)
}

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Before and after, field by field (changed fields marked); other values as text. */
function Changes({ record }: { record: AuditEntry }) {
  const { before, after } = record
  if (before === undefined && after === undefined) return null
  const truncated = record.truncated?.length ? (
    <p class="muted">Too large to keep in full: {record.truncated.join(', ')}.</p>
  ) : null
  if ((before === undefined || isPlain(before)) && (after === undefined || isPlain(after))) {
    const b = (before ?? {}) as Record<string, unknown>
    const a = (after ?? {}) as Record<string, unknown>
    const keys = [...new Set([...Object.keys(b), ...Object.keys(a)])]
    return (
      <details>
        <summary>
          {before === undefined ? 'Values' : after === undefined ? 'Before' : 'Before and after'} ({keys.length} field
          {keys.length === 1 ? '' : 's'})
        </summary>
        {truncated}
        <table class="changes">
          <thead>
            <tr>
              <th scope="col">Field</th>
              {before !== undefined ? <th scope="col">Before</th> : null}
              {after !== undefined ? <th scope="col">After</th> : null}
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => {
              const changed = before !== undefined && after !== undefined && show(b[k]) !== show(a[k])
              return (
                <tr key={k} class={changed ? 'changed' : ''}>
                  <th scope="row">
                    {k}
                    {changed ? <span class="sr-only"> (changed)</span> : null}
                  </th>
                  {before !== undefined ? (
                    <td>
                      <pre>{show(b[k])}</pre>
                    </td>
                  ) : null}
                  {after !== undefined ? (
                    <td>
                      <pre>{show(a[k])}</pre>
                    </td>
                  ) : null}
                </tr>
              )
            })}
          </tbody>
        </table>
      </details>
    )
  }
  return (
    <details>
      <summary>Before and after</summary>
      {truncated}
      <dl class="facts">
        <dt>Before</dt>
        <dd>
          <pre>{show(before)}</pre>
        </dd>
        <dt>After</dt>
        <dd>
          <pre>{show(after)}</pre>
        </dd>
      </dl>
    </details>
  )
}
