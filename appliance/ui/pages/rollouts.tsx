import { useState } from 'preact/hooks'
import {
  can,
  type Device,
  type Group,
  type Patch,
  post,
  type RingView,
  type Rollout,
  type RolloutDevice,
} from '../api.ts'
import { ActionButton, ConfirmButton, ErrorBox, Loading, PageTitle, Progress, useAction } from '../components.tsx'
import { is, isObject, useApi } from '../data.ts'
import { ago, dateTime, percent, shortId } from '../format.ts'
import { DEFAULT_RINGS, type RingDraft, RingsEditor, ringSpec } from '../rings-editor.tsx'
import { href, navigate, route } from '../router.ts'

function selectorText(s: RingView['selector']): string {
  if ('groups' in s) return `groups ${s.groups.join(', ')}`
  if ('percent' in s) return `${s.percent}% of the target`
  if ('count' in s) return `${s.count} device${s.count === 1 ? '' : 's'}`
  return 'every remaining device'
}

/** One progress bar per ring: installed of total, failures in the label. */
export function RingBars({ rollout }: { rollout: Rollout }) {
  return (
    <ol class="rings">
      {rollout.rings.map((r, i) => (
        <li key={r.name} class={i === rollout.current ? 'current' : ''}>
          <span class="ring-name">
            {r.name} <span class="muted">{r.status}</span>
          </span>
          <Progress
            value={r.installed}
            max={Math.max(r.total, 1)}
            tone={r.failed > 0 ? (r.failed / Math.max(r.total, 1) >= r.errorThreshold ? 'bad' : 'warn') : 'ok'}
            label={`Ring ${r.name}: ${r.installed} of ${r.total} installed, ${r.failed} failed`}
          />
          <span class="muted">
            {r.installed}/{r.total} installed{r.failed ? `, ${r.failed} failed` : ''}
          </span>
        </li>
      ))}
    </ol>
  )
}

export function RolloutsPage() {
  const res = useApi<{ rollouts: Rollout[] }>('/api/v1/rollouts', is('rollout'))
  const patches = useApi<{ patches: Patch[] }>('/api/v1/patches', is('patch'))
  const creating = route.value.params.has('create')
  const names = new Map((patches.data?.patches ?? []).map((p) => [p.bundleId, `${p.name} ${p.version}`]))
  const list = [...(res.data?.rollouts ?? [])].sort((a, b) => b.createdAt.localeCompare(a.createdAt))
  return (
    <section>
      <PageTitle>Rollouts</PageTitle>
      {can('operate') && !creating ? (
        <p>
          <a class="button primary" href="#/rollouts?create=1">
            New rollout
          </a>
        </p>
      ) : null}
      {creating && can('operate') ? <CreateRollout patches={patches.data?.patches ?? []} /> : null}
      <ErrorBox error={res.error} title="Could not load the rollouts" />
      {res.loading ? <Loading /> : null}
      {res.data && list.length === 0 ? <p class="muted">No rollout yet.</p> : null}
      {list.length > 0 ? (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Rollout</th>
                <th scope="col">Patch</th>
                <th scope="col">Status</th>
                <th scope="col">Progress</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {list.map((r) => {
                const total = r.rings.reduce((s, x) => s + x.total, 0)
                const done = r.rings.reduce((s, x) => s + x.installed, 0)
                return (
                  <tr key={r.id}>
                    <th scope="row">
                      <a href={href('rollouts', r.id)}>{r.name}</a>
                      <div class="muted mono">{r.id}</div>
                    </th>
                    <td>{names.get(r.bundleId) ?? <span class="mono">{shortId(r.bundleId)}</span>}</td>
                    <td>
                      <span class={`status status-${r.status}`}>{r.status}</span>
                      <div class="muted">
                        ring {Math.min(r.current + 1, r.rings.length)} of {r.rings.length}
                      </div>
                    </td>
                    <td>
                      <Progress
                        value={done}
                        max={Math.max(total, 1)}
                        label={`${r.name}: ${done} of ${total} installed`}
                      />
                      <span class="muted">
                        {done}/{total} ({percent(done, total)})
                      </span>
                    </td>
                    <td>{ago(r.updatedAt)}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  )
}

function CreateRollout({ patches }: { patches: Patch[] }) {
  const groups = useApi<{ groups: Group[] }>('/api/v1/groups', is('group'))
  const preset = route.value.params.get('bundle') ?? ''
  const [rings, setRings] = useState<RingDraft[]>(DEFAULT_RINGS)
  const { busy, error, run } = useAction()
  const submit = async (e: Event) => {
    e.preventDefault()
    const f = new FormData(e.currentTarget as HTMLFormElement)
    const targetText = String(f.get('target') ?? '').trim()
    const spec = {
      id: String(f.get('id')).trim(),
      name: String(f.get('name')).trim(),
      bundleId: String(f.get('bundle')),
      target:
        targetText === '' || targetText === 'all'
          ? ('all' as const)
          : targetText
              .split(',')
              .map((g) => g.trim())
              .filter(Boolean),
      retries: Number(f.get('retries')),
      rings: rings.map(ringSpec),
    }
    await run(async () => {
      const created = await post<Rollout>('/api/v1/rollouts', spec)
      navigate(href('rollouts', created.id))
    })
  }
  const groupIds = (groups.data?.groups ?? []).map((g) => g.id)
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="new-rollout">
      <h2 id="new-rollout">New rollout</h2>
      <div class="grid2">
        <label>
          Patch
          <select name="bundle" required defaultValue={preset}>
            <option value="">Choose a patch…</option>
            {patches.map((p) => (
              <option key={p.bundleId} value={p.bundleId}>
                {p.name} {p.version} ({p.severity})
              </option>
            ))}
          </select>
        </label>
        <label>
          Rollout id <span class="muted">(letters, digits, . _ -)</span>
          <input name="id" required maxLength={64} pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" />
        </label>
        <label>
          Rollout name
          <input name="name" required maxLength={200} />
        </label>
        <label>
          Target groups{' '}
          <span class="muted">(comma-separated, or all{groupIds.length ? `: ${groupIds.join(', ')}` : ''})</span>
          <input name="target" defaultValue="all" />
        </label>
        <label>
          Retries per device
          <input name="retries" type="number" min={0} max={10} defaultValue="2" required />
        </label>
      </div>
      <RingsEditor rings={rings} onChange={setRings} layout="fieldsets" />
      <ErrorBox error={error} title="The rollout was not created" />
      <div class="actions">
        <a class="button" href="#/rollouts">
          Cancel
        </a>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create rollout'}
        </button>
      </div>
    </form>
  )
}

export function RolloutDetailPage({ id }: { id: string }) {
  const path = `/api/v1/rollouts/${encodeURIComponent(id)}`
  const res = useApi<Rollout>(path, isObject('rollout', id))
  const devs = useApi<{ id: string; devices: Record<string, RolloutDevice> }>(
    `${path}/devices`,
    isObject('rollout', id),
  )
  const devices = useApi<{ devices: Device[] }>('/api/v1/devices?limit=10000', is('device'))
  const patches = useApi<{ patches: Patch[] }>('/api/v1/patches', is('patch'))
  const hosts = new Map((devices.data?.devices ?? []).map((d) => [d.peerId, d.hostname]))
  const r = res.data
  const patch = patches.data?.patches.find((p) => p.bundleId === r?.bundleId)
  const command = (name: string, body: unknown = {}) => post<Rollout>(`${path}/${name}`, body)
  const operate = can('operate')
  const ended = r ? ['cancelled', 'completed', 'rolled-back'].includes(r.status) : true
  const awaiting = r?.rings[r.current]?.status === 'awaiting-approval'
  const rows = Object.entries(devs.data?.devices ?? {}).sort(
    (a, b) => a[1].ring - b[1].ring || (hosts.get(a[0]) ?? a[0]).localeCompare(hosts.get(b[0]) ?? b[0]),
  )
  return (
    <section>
      <p>
        <a href="#/rollouts">← Rollouts</a>
      </p>
      <PageTitle>{r ? r.name : `Rollout ${id}`}</PageTitle>
      <ErrorBox error={res.error} title="Could not load the rollout" />
      {res.loading ? <Loading /> : null}
      {r ? (
        <>
          <dl class="facts inline">
            <dt>Status</dt>
            <dd>
              <span class={`status status-${r.status}`} role="status">
                {r.status}
              </span>
              {r.reason ? ` — ${r.reason}` : ''}
            </dd>
            <dt>Patch</dt>
            <dd>{patch ? `${patch.name} ${patch.version}` : <span class="mono">{shortId(r.bundleId)}</span>}</dd>
            <dt>Target</dt>
            <dd>{r.spec.target === 'all' ? 'all devices' : r.spec.target.join(', ')}</dd>
            <dt>Created</dt>
            <dd>{dateTime(r.createdAt)}</dd>
            {r.rollback ? (
              <>
                <dt>Rollback</dt>
                <dd>
                  by {r.rollback.by} {ago(r.rollback.at)}
                  {r.rollback.emergency ? ' (emergency)' : ''}
                  {r.rollback.reason ? ` — ${r.rollback.reason}` : ''}
                </dd>
              </>
            ) : null}
          </dl>
          {operate ? (
            <div class="actions">
              {r.status === 'active' ? <ActionButton label="Pause" onClick={() => command('pause')} /> : null}
              {r.status === 'paused' || r.status === 'halted' ? (
                <ActionButton label="Resume" kind="primary" onClick={() => command('resume')} />
              ) : null}
              {awaiting ? (
                <ConfirmButton
                  label="Approve next ring"
                  title="Approve the next ring?"
                  message={`Ring ${r.rings[r.current]?.name} passed. The next ring starts when you approve.`}
                  confirmLabel="Approve"
                  onConfirm={() => command('approve', { ring: r.current })}
                />
              ) : null}
              {!ended ? (
                <ConfirmButton
                  label="Cancel rollout"
                  title="Cancel this rollout?"
                  message="No more devices get the patch. Devices that installed it keep it."
                  confirmLabel="Cancel rollout"
                  danger
                  extra={<ReasonField />}
                  onConfirm={(f) => command('cancel', reasonOf(f))}
                />
              ) : null}
              {r.status !== 'rolled-back' && r.status !== 'rolling-back' ? (
                <ConfirmButton
                  label="Roll back"
                  title="Roll back this patch everywhere?"
                  message="Every device of this rollout removes the patch, in its maintenance window unless this is an emergency."
                  confirmLabel="Roll back"
                  danger
                  extra={
                    <>
                      <ReasonField />
                      <label class="check">
                        <input type="checkbox" name="emergency" value="yes" /> Emergency: ignore maintenance windows
                      </label>
                    </>
                  }
                  onConfirm={(f) => command('rollback', { ...reasonOf(f), emergency: f.get('emergency') === 'yes' })}
                />
              ) : null}
            </div>
          ) : null}
          <h2>Rings</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Ring</th>
                  <th scope="col">Devices</th>
                  <th scope="col">Status</th>
                  <th scope="col">Progress</th>
                  <th scope="col">Thresholds</th>
                </tr>
              </thead>
              <tbody>
                {r.rings.map((ring, i) => (
                  <tr key={ring.name} class={i === r.current ? 'current' : ''}>
                    <th scope="row">
                      {i + 1}. {ring.name}
                    </th>
                    <td>{selectorText(ring.selector)}</td>
                    <td>
                      {ring.status}
                      {ring.soakUntil && ring.status === 'soaking' ? (
                        <div class="muted">until {dateTime(ring.soakUntil)}</div>
                      ) : null}
                      {ring.approvedBy ? <div class="muted">approved by {ring.approvedBy}</div> : null}
                    </td>
                    <td>
                      <Progress
                        value={ring.installed}
                        max={Math.max(ring.total, 1)}
                        tone={ring.failed > 0 ? 'warn' : 'ok'}
                        label={`Ring ${ring.name}: ${ring.installed} of ${ring.total} installed`}
                      />
                      <span class="muted">
                        {ring.installed}/{ring.total} installed, {ring.pending} pending, {ring.failed} failed
                        {ring.rollingBack + ring.rolledBack + ring.rollbackFailed > 0
                          ? `, ${ring.rolledBack} rolled back, ${ring.rollingBack} rolling back, ${ring.rollbackFailed} rollback failed`
                          : ''}
                      </span>
                    </td>
                    <td>
                      success ≥ {Math.round(ring.successThreshold * 100)}%, halt at{' '}
                      {Math.round(ring.errorThreshold * 100)}% failed
                      {ring.soakMinutes ? `, soak ${ring.soakMinutes} min` : ''}
                      {ring.approvalGate ? ', approval gate' : ''}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2>Devices</h2>
          <ErrorBox error={devs.error} title="Could not load the devices" />
          {rows.length === 0 && devs.data ? <p class="muted">No device assigned yet.</p> : null}
          {rows.length > 0 ? (
            <div class="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Device</th>
                    <th scope="col">Ring</th>
                    <th scope="col">State</th>
                    <th scope="col">Attempts</th>
                    <th scope="col">Since</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map(([peerId, d]) => (
                    <tr key={peerId}>
                      <th scope="row">
                        <a href={href('devices', peerId)}>{hosts.get(peerId) ?? shortId(peerId, 20)}</a>
                      </th>
                      <td>{r.rings[d.ring]?.name ?? d.ring}</td>
                      <td>
                        {d.state === 'assigned' && d.attempts === 0 ? (
                          <span class="status status-pending">waiting for its ring</span>
                        ) : (
                          <span class={`status status-${d.state}`}>{d.state}</span>
                        )}
                        {d.lastError ? (
                          <div class="error-inline">
                            {d.lastError.message} <code>{d.lastError.code}</code>
                          </div>
                        ) : null}
                      </td>
                      <td>{d.attempts}</td>
                      <td>{ago(d.since)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          ) : null}
        </>
      ) : null}
    </section>
  )
}

function ReasonField() {
  return (
    <label>
      Reason <span class="muted">(recorded in the audit log)</span>
      <textarea name="reason" maxLength={2000} rows={2} />
    </label>
  )
}

function reasonOf(f: FormData): { reason?: string } {
  const reason = String(f.get('reason') ?? '').trim()
  return reason ? { reason } : {}
}
