import { useEffect, useState } from 'preact/hooks'
import { type AuditRecord, type Device, type DeviceDetail, type Patch, query } from '../api.ts'
import { Badge, ErrorBox, Loading, PageTitle, Progress } from '../components.tsx'
import { is, isObject, useApi } from '../data.ts'
import { ago, bytes, dateTime, isOnline, shortId } from '../format.ts'
import { href, navigate, route } from '../router.ts'

export function DevicesPage() {
  const initial = route.value.params.get('q') ?? ''
  const [text, setText] = useState(initial)
  const [q, setQ] = useState(initial)
  // Search as you type, without a request per keystroke.
  useEffect(() => {
    const t = setTimeout(() => setQ(text.trim()), 250)
    return () => clearTimeout(t)
  }, [text])
  useEffect(() => {
    navigate(`#/devices${q ? `?q=${encodeURIComponent(q)}` : ''}`, true)
  }, [q])
  const res = useApi<{ total: number; devices: Device[] }>(
    `/api/v1/devices${query({ q: q || undefined, limit: 1000 })}`,
    is('device'),
  )
  const now = Date.now()
  return (
    <section>
      <PageTitle>Devices</PageTitle>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search devices
          <input
            type="search"
            value={text}
            placeholder="host name, PeerId or tag"
            onInput={(e) => setText((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        {res.data ? (
          <span class="muted" role="status">
            {res.data.total} device{res.data.total === 1 ? '' : 's'}
          </span>
        ) : null}
      </form>
      <ErrorBox error={res.error} title="Could not load the devices" />
      {res.loading ? <Loading /> : null}
      {res.data && res.data.devices.length === 0 ? (
        <p class="muted">
          {q
            ? 'No device matches.'
            : 'No device is enrolled yet. Create a token (patchswarm appliance token) and enroll an agent.'}
        </p>
      ) : null}
      {res.data && res.data.devices.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Enrolled devices</caption>
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">State</th>
                <th scope="col">OS</th>
                <th scope="col">Last seen</th>
                <th scope="col">Tags</th>
                <th scope="col">Tier</th>
              </tr>
            </thead>
            <tbody>
              {res.data.devices.map((d) => (
                <tr key={d.peerId}>
                  <th scope="row">
                    <a href={href('devices', d.peerId)}>{d.hostname}</a>
                    <div class="muted mono">{shortId(d.peerId, 20)}</div>
                  </th>
                  <td>
                    {isOnline(d.lastSeen, now) ? <Badge kind="ok">online</Badge> : <Badge kind="off">offline</Badge>}{' '}
                    {d.inventory?.rebootPending ? <Badge kind="warn">reboot pending</Badge> : null}
                  </td>
                  <td>{d.inventory ? `${d.inventory.os.name} (${d.inventory.os.arch})` : '—'}</td>
                  <td>{ago(d.lastSeen, now)}</td>
                  <td>{d.tags.join(', ') || '—'}</td>
                  <td>{d.tier}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  )
}

export function DeviceDetailPage({ peerId }: { peerId: string }) {
  const res = useApi<DeviceDetail>(`/api/v1/devices/${encodeURIComponent(peerId)}`, isObject('device', peerId))
  const patches = useApi<{ patches: Patch[] }>('/api/v1/patches', is('patch'))
  const history = useApi<{ records: AuditRecord[] }>(
    `/api/v1/audit${query({ targetId: peerId, order: 'desc', limit: 50 })}`,
    is('audit'),
  )
  // What the approval plan requires of this device and it does not have (the compliance report).
  const compliance = useApi<{ rows: ComplianceRow[] }>(
    `/api/v1/reports/compliance${query({ device: peerId })}`,
    is('device', 'approval', 'patch', 'group'),
  )
  const row = compliance.data?.rows[0]
  const names = new Map((patches.data?.patches ?? []).map((p) => [p.bundleId, `${p.name} ${p.version}`]))
  const d = res.data?.device
  const inv = res.data?.inventory?.inventory
  const bundles = d?.report?.bundles ?? []
  return (
    <section>
      <p>
        <a href="#/devices">← Devices</a>
      </p>
      <PageTitle>{d ? d.hostname : 'Device'}</PageTitle>
      <ErrorBox error={res.error} title="Could not load the device" />
      {res.loading ? <Loading /> : null}
      {d ? (
        <>
          <div class="tiles">
            <article class="tile" aria-labelledby="d-summary">
              <h2 id="d-summary">Summary</h2>
              <dl class="facts">
                <dt>PeerId</dt>
                <dd class="mono wrap">{d.peerId}</dd>
                <dt>State</dt>
                <dd>{isOnline(d.lastSeen) ? 'online' : 'offline'}</dd>
                <dt>Last seen</dt>
                <dd>
                  {ago(d.lastSeen)}
                  {d.lastSeen ? <span class="muted"> ({dateTime(d.lastSeen)})</span> : null}
                </dd>
                <dt>Enrolled</dt>
                <dd>{dateTime(d.enrolledAt)}</dd>
                <dt>Tags</dt>
                <dd>{d.tags.join(', ') || '—'}</dd>
                <dt>Tier</dt>
                <dd>{d.tier}</dd>
                <dt>Agent</dt>
                <dd>{d.report?.agentVersion ?? '—'}</dd>
              </dl>
              {d.report?.refused ? (
                <div class="error" role="alert">
                  The agent refused its last assignment: {d.report.refused.message} <code>{d.report.refused.code}</code>
                </div>
              ) : null}
            </article>
            <article class="tile" aria-labelledby="d-inventory">
              <h2 id="d-inventory">Inventory</h2>
              {inv ? (
                <dl class="facts">
                  <dt>Reported</dt>
                  <dd>{ago(res.data?.inventory?.receivedAt)}</dd>
                  <dt>Host name</dt>
                  <dd>{inv.hostname}</dd>
                  <dt>OS</dt>
                  <dd>{inv.os.name}</dd>
                  <dt>Kernel</dt>
                  <dd>{inv.os.kernel}</dd>
                  <dt>Architecture</dt>
                  <dd>{inv.os.arch}</dd>
                  <dt>Packages</dt>
                  <dd>
                    {inv.packages.length} ({inv.packageManager})
                  </dd>
                  {inv.hotfixes ? (
                    <>
                      <dt>Hotfixes</dt>
                      <dd>{inv.hotfixes.length}</dd>
                    </>
                  ) : null}
                  <dt>Addresses</dt>
                  <dd>{inv.addresses.map((a) => a.address).join(', ') || '—'}</dd>
                  <dt>Reboot pending</dt>
                  <dd>{inv.reboot.pending ? `yes (${inv.reboot.reasons.join(', ')})` : 'no'}</dd>
                </dl>
              ) : (
                <p class="muted">No inventory reported yet.</p>
              )}
            </article>
          </div>
          <h2>Patches required by policy</h2>
          <ErrorBox error={compliance.error} title="Could not load compliance" />
          {row ? (
            row.required.length === 0 ? (
              <p class="muted">No approved patch applies to this device's groups.</p>
            ) : row.missing.length === 0 ? (
              <p data-testid="device-compliant">
                Compliant: all {row.required.length} approved patch{row.required.length === 1 ? ' is' : 'es are'}{' '}
                installed.
              </p>
            ) : (
              <>
                <p data-testid="device-missing">
                  {row.missing.length} of {row.required.length} approved patch{row.required.length === 1 ? '' : 'es'}{' '}
                  missing:
                </p>
                <ul>
                  {row.missing.map((m) => (
                    <li key={m.bundleId}>
                      <span class={`badge badge-${m.severity}`}>{m.severity}</span> {m.name} {m.version}
                    </li>
                  ))}
                </ul>
              </>
            )
          ) : null}
          <h2>Bundles</h2>
          {bundles.length === 0 ? <p class="muted">The device reported no bundles.</p> : null}
          {bundles.length > 0 ? (
            <div class="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Patch</th>
                    <th scope="col">State</th>
                    <th scope="col">Download</th>
                    <th scope="col">From the appliance</th>
                    <th scope="col">From peers</th>
                    <th scope="col">Served to peers</th>
                  </tr>
                </thead>
                <tbody>
                  {bundles.map((b) => (
                    <tr key={b.bundleId}>
                      <th scope="row">
                        {names.get(b.bundleId) ?? <span class="mono">{shortId(b.bundleId)}</span>}
                        {b.action === 'rollback' ? <span class="muted"> (rollback)</span> : null}
                      </th>
                      <td>
                        <span class={`status status-${b.state}`}>{b.state}</span>
                        {b.rebootRequired ? <Badge kind="warn">reboot required</Badge> : null}
                        {b.error ? (
                          <div class="error-inline">
                            {b.error.message} <code>{b.error.code}</code>
                          </div>
                        ) : null}
                        {b.detail ? <div class="muted">{b.detail}</div> : null}
                      </td>
                      <td>
                        <Progress
                          value={b.chunksHave}
                          max={b.chunksTotal}
                          label={`${b.chunksHave} of ${b.chunksTotal} chunks`}
                        />
                        <span class="muted">
                          {b.chunksHave}/{b.chunksTotal} chunks
                        </span>
                      </td>
                      <td>{bytes(b.transfer.bytesFromAppliance)}</td>
                      <td>{bytes(b.transfer.bytesFromPeers)}</td>
                      <td>{bytes(b.transfer.bytesServed)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
          <h2>History</h2>
          <ErrorBox error={history.error} title="Could not load the history" />
          <AuditList records={history.data?.records} />
        </>
      ) : null}
    </section>
  )
}

export function AuditList({ records }: { records: AuditRecord[] | undefined }) {
  if (!records) return null
  if (records.length === 0) return <p class="muted">Nothing recorded yet.</p>
  return (
    <ol class="history">
      {records.map((r) => (
        <li key={r.seq}>
          <time dateTime={r.time}>{dateTime(r.time)}</time> <strong>{r.action}</strong>{' '}
          <span class="muted">
            by {r.actor.type} {r.actor.id}
          </span>
          {r.reason ? <span> — {r.reason}</span> : null}
        </li>
      ))}
    </ol>
  )
}

/** One device's row of GET /api/v1/reports/compliance. */
interface ComplianceRow {
  peerId: string
  required: string[]
  missing: Array<{ bundleId: string; name: string; version: string; severity: string }>
  compliant: boolean
}
