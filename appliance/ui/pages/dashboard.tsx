import { Fragment } from 'preact'
import type { Device, Patch, Rollout, StatusDevice, WanUsage } from '../api.ts'
import { ErrorBox, Loading, PageTitle, Progress } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { bytes, isOnline, SEVERITIES } from '../format.ts'
import { href } from '../router.ts'
import { RingBars } from './rollouts.tsx'

const ACTIVE = new Set(['active', 'paused', 'halted', 'rolling-back'])

export function DashboardPage() {
  const devices = useApi<{ total: number; devices: Device[] }>('/api/v1/devices?limit=10000', is('device'))
  const patches = useApi<{ patches: Patch[] }>('/api/v1/patches', is('patch', 'approval'))
  const rollouts = useApi<{ rollouts: Rollout[] }>('/api/v1/rollouts', is('rollout'))
  const status = useApi<{ devices: StatusDevice[] }>('/api/v1/status', is('device'))
  const wan = useApi<WanUsage>('/api/v1/metrics/wan', is('wan'))

  const now = Date.now()
  const list = devices.data?.devices ?? []
  const online = list.filter((d) => isOnline(d.lastSeen, now)).length
  const reboot = list.filter((d) => d.inventory?.rebootPending).length
  const bySeverity = new Map<string, number>()
  for (const p of patches.data?.patches ?? []) bySeverity.set(p.severity, (bySeverity.get(p.severity) ?? 0) + 1)
  const active = (rollouts.data?.rollouts ?? []).filter((r) => ACTIVE.has(r.status))
  let delivered = 0
  let fromPeers = 0
  for (const d of status.data?.devices ?? [])
    for (const b of d.report?.bundles ?? []) {
      delivered += b.transfer.bytesFromAppliance + b.transfer.bytesFromPeers
      fromPeers += b.transfer.bytesFromPeers
    }

  return (
    <section>
      <PageTitle>Dashboard</PageTitle>
      <div class="tiles">
        <article class="tile" aria-labelledby="t-devices">
          <h2 id="t-devices">Devices</h2>
          {devices.error ? <ErrorBox error={devices.error} /> : null}
          {devices.loading ? (
            <Loading />
          ) : (
            <dl class="facts">
              <dt>Online</dt>
              <dd data-testid="devices-online">{online}</dd>
              <dt>Offline</dt>
              <dd data-testid="devices-offline">{list.length - online}</dd>
              <dt>Reboot pending</dt>
              <dd>{reboot}</dd>
            </dl>
          )}
          <a href="#/devices">All devices</a>
        </article>
        <article class="tile" aria-labelledby="t-patches">
          <h2 id="t-patches">Patches by severity</h2>
          {patches.error ? <ErrorBox error={patches.error} /> : null}
          {patches.loading ? (
            <Loading />
          ) : (
            <dl class="facts">
              {SEVERITIES.map((s) => (
                <Fragment key={s}>
                  <dt>
                    <span class={`badge badge-${s}`}>{s}</span>
                  </dt>
                  <dd>{bySeverity.get(s) ?? 0}</dd>
                </Fragment>
              ))}
            </dl>
          )}
          <p data-testid="patch-count">
            {patches.data?.patches.length ?? 0} patch{patches.data?.patches.length === 1 ? '' : 'es'} in the catalog
          </p>
          <a href="#/patches">All patches</a>
        </article>
        <article class="tile wide" aria-labelledby="t-wan">
          <h2 id="t-wan">Bandwidth</h2>
          {wan.error && wan.error.status !== 404 ? <ErrorBox error={wan.error} /> : null}
          {status.error ? <ErrorBox error={status.error} /> : null}
          <Bandwidth wan={wan.data} delivered={delivered} fromPeers={fromPeers} />
        </article>
      </div>
      <h2>Active rollouts</h2>
      {rollouts.error ? <ErrorBox error={rollouts.error} /> : null}
      {rollouts.loading ? <Loading /> : null}
      {!rollouts.loading && active.length === 0 ? <p class="muted">No rollout is running.</p> : null}
      <ul class="cards">
        {active.map((r) => (
          <li key={r.id} class="card">
            <h3>
              <a href={href('rollouts', r.id)}>{r.name}</a> <span class={`status status-${r.status}`}>{r.status}</span>
            </h3>
            <RingBars rollout={r} />
          </li>
        ))}
      </ul>
    </section>
  )
}

/** WAN bytes against bytes delivered to devices: the difference is what the swarm saved. */
function Bandwidth({ wan, delivered, fromPeers }: { wan: WanUsage | undefined; delivered: number; fromPeers: number }) {
  const wanBytes = wan?.totalBytes ?? 0
  const saved = Math.max(0, delivered - wanBytes)
  const max = Math.max(wanBytes, delivered, 1)
  const days = (wan?.days ?? []).slice(-14)
  const dayMax = Math.max(1, ...days.map((d) => d.bytes))
  return (
    <div class="bandwidth">
      <dl class="facts">
        <dt>Downloaded over the WAN</dt>
        <dd data-testid="wan-bytes">{bytes(wanBytes)}</dd>
        <dt>Delivered to devices</dt>
        <dd>{bytes(delivered)}</dd>
        <dt>of which from peers</dt>
        <dd>{bytes(fromPeers)}</dd>
        <dt>Bandwidth saved (delivered − WAN)</dt>
        <dd>
          <strong>{bytes(saved)}</strong>
        </dd>
      </dl>
      <svg
        class="chart"
        viewBox="0 0 400 56"
        role="img"
        aria-label={`WAN ${bytes(wanBytes)}, delivered ${bytes(delivered)}`}
      >
        <title>WAN bytes against bytes delivered</title>
        <text x="0" y="16" class="chart-label">
          WAN
        </text>
        <rect x="80" y="4" height="16" width={(310 * wanBytes) / max} class="chart-wan" />
        <text x="0" y="44" class="chart-label">
          Delivered
        </text>
        <rect x="80" y="32" height="16" width={(310 * delivered) / max} class="chart-delivered" />
      </svg>
      {days.length > 0 ? (
        <svg
          class="chart"
          viewBox={`0 0 ${days.length * 20} 64`}
          role="img"
          aria-label={`WAN bytes per day, last ${days.length} days`}
        >
          <title>WAN bytes per day</title>
          {days.map((d, i) => {
            const h = (50 * d.bytes) / dayMax
            return (
              <rect key={d.day} x={i * 20 + 3} y={52 - h} width="14" height={h} class="chart-wan">
                <title>{`${d.day}: ${bytes(d.bytes)}`}</title>
              </rect>
            )
          })}
          <text x="0" y="63" class="chart-label small">
            {days[0]?.day}
          </text>
        </svg>
      ) : (
        <p class="muted">No WAN traffic recorded yet.</p>
      )}
      <Progress
        value={saved}
        max={Math.max(delivered, 1)}
        label="Share of delivered bytes that did not cross the WAN"
      />
    </div>
  )
}
