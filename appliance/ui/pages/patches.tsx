import { useEffect, useState } from 'preact/hooks'
import { type Approval, type Artifact, can, type Group, type Patch, post, type UpstreamStatus } from '../api.ts'
import { ActionButton, Badge, ErrorBox, Loading, PageTitle, Progress } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { ago, bytes, dateTime, percent, SEVERITIES } from '../format.ts'

const severityRank = (s: string) => {
  const i = (SEVERITIES as readonly string[]).indexOf(s)
  return i < 0 ? SEVERITIES.length : i
}

export function PatchesPage() {
  const patches = useApi<{ patches: Patch[] }>('/api/v1/patches', is('patch', 'approval'))
  const groups = useApi<{ groups: Group[] }>('/api/v1/groups', is('group'))
  const artifacts = useApi<{ total: number; artifacts: Artifact[] }>(
    '/api/v1/upstream/artifacts?limit=1000',
    is('upstream'),
  )
  const [filter, setFilter] = useState('')
  const cves = new Map<string, string[]>()
  for (const a of artifacts.data?.artifacts ?? []) if (a.bundleId) cves.set(a.bundleId, a.cves)
  const needle = filter.trim().toLowerCase()
  const list = (patches.data?.patches ?? [])
    .filter(
      (p) =>
        !needle ||
        `${p.name} ${p.version} ${p.vendor} ${p.product} ${p.severity} ${(cves.get(p.bundleId) ?? []).join(' ')}`
          .toLowerCase()
          .includes(needle),
    )
    .sort((a, b) => severityRank(a.severity) - severityRank(b.severity) || b.addedAt.localeCompare(a.addedAt))
  const groupIds = ['*', ...(groups.data?.groups ?? []).map((g) => g.id)]
  return (
    <section>
      <PageTitle>Patches</PageTitle>
      <Downloads />
      <h2>Catalog</h2>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()}>
        <label>
          Filter patches
          <input
            type="search"
            value={filter}
            placeholder="name, vendor, severity or CVE"
            onInput={(e) => setFilter((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
      </form>
      <ErrorBox error={patches.error} title="Could not load the patches" />
      {patches.loading ? <Loading /> : null}
      {patches.data && list.length === 0 ? (
        <p class="muted">
          {needle ? 'No patch matches.' : 'The catalog is empty: ingest a bundle or fetch one upstream.'}
        </p>
      ) : null}
      {list.length > 0 ? (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Patch</th>
                <th scope="col">Severity</th>
                <th scope="col">CVEs</th>
                <th scope="col">Decisions</th>
                {can('operate') ? <th scope="col">Decide</th> : null}
              </tr>
            </thead>
            <tbody>
              {list.map((p) => (
                <tr key={p.bundleId}>
                  <th scope="row">
                    {p.name} {p.version}
                    <div class="muted">
                      {p.vendor} · {p.product} · {p.classification} · added {ago(p.addedAt)}
                    </div>
                  </th>
                  <td>
                    <Badge kind={p.severity}>{p.severity}</Badge>
                  </td>
                  <td>{(cves.get(p.bundleId) ?? []).join(', ') || '—'}</td>
                  <td>
                    <Decisions approvals={p.approvals} />
                  </td>
                  {can('operate') ? (
                    <td>
                      <Decide patch={p} groups={groupIds} />
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <Upstream artifacts={artifacts.data?.artifacts} error={artifacts.error} />
    </section>
  )
}

function Decisions({ approvals }: { approvals: Approval[] }) {
  if (approvals.length === 0) return <span class="muted">none</span>
  return (
    <ul class="plain">
      {approvals.map((a) => (
        <li key={a.group}>
          <Badge kind={a.decision}>{a.decision}</Badge> {a.group === '*' ? 'all groups' : a.group}
          <span class="muted">
            {' '}
            by {a.rule ? `rule ${a.rule}` : a.by.replace(/^(operator|api-token):/, '')}
            {a.deadline ? `, deadline ${dateTime(a.deadline)}` : ''}
          </span>
        </li>
      ))}
    </ul>
  )
}

function Decide({ patch, groups }: { patch: Patch; groups: string[] }) {
  const [group, setGroup] = useState('*')
  const id = `g-${patch.bundleId.slice(0, 12)}`
  const decide = (decision: 'approve' | 'decline' | 'skip') => () =>
    post(`/api/v1/patches/${patch.bundleId}/${decision}`, { group })
  return (
    <div class="decide">
      <label for={id} class="sr-only">
        Group for {patch.name} {patch.version}
      </label>
      <select id={id} value={group} onChange={(e) => setGroup((e.currentTarget as HTMLSelectElement).value)}>
        {groups.map((g) => (
          <option key={g} value={g}>
            {g === '*' ? 'All groups' : g}
          </option>
        ))}
      </select>
      <ActionButton label="Approve" kind="primary" onClick={decide('approve')} />
      <ActionButton label="Decline" kind="danger" onClick={decide('decline')} />
      <ActionButton label="Skip" onClick={decide('skip')} />
      <a class="button" href={`#/rollouts?create=1&bundle=${patch.bundleId}`}>
        Roll out
      </a>
    </div>
  )
}

/** WAN downloads in progress (not in the database: polled while any runs). */
function Downloads() {
  const [polling, setPolling] = useState(false)
  const res = useApi<UpstreamStatus>('/api/v1/upstream', is('upstream'), { pollMs: polling ? 2000 : 0 })
  const downloads = res.data?.downloads ?? []
  const running = downloads.length > 0
  useEffect(() => setPolling(running), [running])
  if (res.error?.status === 404) return null
  return (
    <>
      <h2>Upstream</h2>
      <ErrorBox error={res.error} title="Could not load the upstream state" />
      {res.data ? (
        <p class="muted">
          {res.data.feeds.length} feed{res.data.feeds.length === 1 ? '' : 's'}
          {res.data.feeds.map((f) => (
            <span key={f.feedId}>
              {' '}
              · {f.feedId}: last sync {ago(f.lastOkAt)}
              {f.lastError ? ` (error: ${f.lastError.message})` : ''}
            </span>
          ))}{' '}
          · cache {bytes(res.data.cache.usedBytes)} of {bytes(res.data.cache.quotaBytes)}
        </p>
      ) : null}
      {downloads.length > 0 ? (
        <ul class="downloads" aria-live="polite">
          {downloads.map((d) => (
            <li key={d.sha256}>
              <strong>{d.name}</strong> <span class="muted">{d.state}</span>
              <Progress value={d.bytes} max={d.size} label={`${d.name}: ${percent(d.bytes, d.size)} downloaded`} />
              <span class="muted">
                {bytes(d.bytes)} of {bytes(d.size)} ({percent(d.bytes, d.size)}) · {bytes(d.rateBytesPerSec)}/s
                {d.attempt > 1 ? ` · attempt ${d.attempt}` : ''}
                {d.lastError ? ` · ${d.lastError.message}` : ''}
              </span>
            </li>
          ))}
        </ul>
      ) : res.data ? (
        <p class="muted">No WAN download running.</p>
      ) : null}
    </>
  )
}

/** What the feeds offer that is not in the catalog yet. */
function Upstream({ artifacts, error }: { artifacts: Artifact[] | undefined; error: unknown }) {
  const offered = (artifacts ?? []).filter((a) => a.state !== 'ready' && a.listed !== false)
  if ((error as { status?: number } | undefined)?.status === 404) return null
  return (
    <>
      <h2>Offered by the feeds</h2>
      <ErrorBox error={error} title="Could not load the upstream artifacts" />
      {artifacts && offered.length === 0 ? <p class="muted">Everything the feeds offer is in the catalog.</p> : null}
      {offered.length > 0 ? (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Artifact</th>
                <th scope="col">Severity</th>
                <th scope="col">CVEs</th>
                <th scope="col">Size</th>
                <th scope="col">State</th>
                {can('operate') ? <th scope="col">Action</th> : null}
              </tr>
            </thead>
            <tbody>
              {offered.slice(0, 200).map((a) => (
                <tr key={a.ref}>
                  <th scope="row">
                    {a.name} {a.version}
                    {a.emergency ? <Badge kind="critical">emergency</Badge> : null}
                    <div class="muted mono">{a.ref}</div>
                  </th>
                  <td>
                    <Badge kind={a.severity}>{a.severity}</Badge>
                  </td>
                  <td>{a.cves.join(', ') || '—'}</td>
                  <td>{bytes(a.size)}</td>
                  <td>
                    {a.state}
                    {a.error ? <div class="error-inline">{a.error.message}</div> : null}
                  </td>
                  {can('operate') ? (
                    <td>
                      {a.state === 'available' || a.state === 'failed' || a.state === 'evicted' ? (
                        <ActionButton label="Download" onClick={() => post('/api/v1/upstream/fetch', { ref: a.ref })} />
                      ) : null}
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  )
}
