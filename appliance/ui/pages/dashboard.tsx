import type { Rollout, WanUsage } from '../api.ts'
import { Badge, ErrorBox, Loading, PageTitle, Progress } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { bytes, dateTime, percent, SEVERITIES } from '../format.ts'
import { href } from '../router.ts'
import { RingBars } from './rollouts.tsx'

/** `GET /api/v1/dashboard` (appliance/reports/dashboard.ts): the whole page in one request. */
export interface DashboardSummary {
  generatedAt: string
  devices: { total: number; online: number; offline: number; rebootPending: number; failing: number }
  compliance: {
    devices: number
    compliant: number
    percent: number
    unmanaged: number
    byGroup: Array<{ group: string; devices: number; compliant: number; percent: number }>
    bySeverity: Array<{ severity: string; missing: number; devices: number; patches: number }>
    topMissing: Array<{ bundleId: string; name: string; version: string; severity: string; devices: number }>
  }
  rollouts: Array<{
    id: string
    name: string
    bundleId: string
    status: Rollout['status']
    current: number
    rings: Array<{ name: string; status: string; total: number; installed: number; failed: number; pending: number }>
  }>
  bandwidth: { wanBytes: number; deliveredBytes: number; fromPeers: number; fromAppliance: number; savedBytes: number }
}

/** What the summary is made of: devices and their reports, the plan (patches, approvals, groups), rollouts, WAN. */
const RELEVANT = is('device', 'rollout', 'patch', 'approval', 'group', 'wan', 'upstream')

const tone = (pct: number) => (pct >= 95 ? 'ok' : pct >= 80 ? 'warn' : 'bad')

/** RingBars wants a Rollout; the summary's rings carry what it draws. */
function asRollout(r: DashboardSummary['rollouts'][number]): Rollout {
  return {
    id: r.id,
    name: r.name,
    bundleId: r.bundleId,
    status: r.status,
    current: r.current,
    createdAt: '',
    updatedAt: '',
    spec: { target: 'all', retries: 0 },
    rings: r.rings.map((x) => ({
      name: x.name,
      selector: { rest: true },
      successThreshold: 1,
      errorThreshold: 1,
      status: x.status as Rollout['rings'][number]['status'],
      total: x.total,
      installed: x.installed,
      failed: x.failed,
      pending: x.pending,
      rollingBack: 0,
      rolledBack: 0,
      rollbackFailed: 0,
    })),
  }
}

export function DashboardPage() {
  const res = useApi<DashboardSummary>('/api/v1/dashboard', RELEVANT)
  const wan = useApi<WanUsage>('/api/v1/metrics/wan', is('wan'))
  const d = res.data
  return (
    <section>
      <PageTitle>Dashboard</PageTitle>
      <ErrorBox error={res.error} title="Could not load the dashboard" />
      {res.loading && !d ? <Loading /> : null}
      {d ? (
        <>
          <div class="tiles">
            <article class="tile" aria-labelledby="t-devices">
              <h2 id="t-devices">Devices</h2>
              <dl class="facts">
                <dt>Enrolled</dt>
                <dd data-testid="devices-total">{d.devices.total}</dd>
                <dt>Online</dt>
                <dd data-testid="devices-online">{d.devices.online}</dd>
                <dt>Offline</dt>
                <dd data-testid="devices-offline">{d.devices.offline}</dd>
                <dt>Reboot pending</dt>
                <dd data-testid="devices-reboot">{d.devices.rebootPending}</dd>
                <dt>With a failed install</dt>
                <dd>{d.devices.failing}</dd>
              </dl>
              {d.devices.offline + d.devices.rebootPending + d.devices.failing > 0 ? (
                <p>
                  {d.devices.offline > 0 ? <Badge kind="off">{d.devices.offline} offline</Badge> : null}{' '}
                  {d.devices.rebootPending > 0 ? (
                    <Badge kind="warn">{d.devices.rebootPending} need a reboot</Badge>
                  ) : null}{' '}
                  {d.devices.failing > 0 ? <Badge kind="decline">{d.devices.failing} failing</Badge> : null}
                </p>
              ) : null}
              <a href="#/devices">All devices</a>
            </article>
            <article class="tile" aria-labelledby="t-compliance">
              <h2 id="t-compliance">Compliance</h2>
              <p class="big" data-testid="compliance-percent">
                {d.compliance.percent}%
              </p>
              <Progress
                value={d.compliance.percent}
                max={100}
                tone={tone(d.compliance.percent)}
                label={`${d.compliance.compliant} of ${d.compliance.devices} devices compliant`}
              />
              <p class="muted">
                {d.compliance.compliant} of {d.compliance.devices} devices have every planned patch
                {d.compliance.unmanaged > 0 ? `; ${d.compliance.unmanaged} are in no group with a plan` : ''}.
              </p>
              <a href="#/reports">Compliance report</a>
            </article>
            <article class="tile" aria-labelledby="t-missing">
              <h2 id="t-missing">Missing patches by severity</h2>
              <SeverityTable summary={d} />
            </article>
            <article class="tile wide" aria-labelledby="t-wan">
              <h2 id="t-wan">Bandwidth</h2>
              {wan.error && wan.error.status !== 404 ? <ErrorBox error={wan.error} /> : null}
              <Bandwidth bw={d.bandwidth} wan={wan.data} />
            </article>
          </div>
          <h2>Compliance by group</h2>
          {d.compliance.byGroup.length === 0 ? (
            <p class="muted">
              No group has a plan yet: <a href="#/patches">approve patches for a group</a> or{' '}
              <a href="#/policies">add an auto-approval rule</a>.
            </p>
          ) : (
            <div class="table-wrap">
              <table>
                <caption class="sr-only">Compliance by group</caption>
                <thead>
                  <tr>
                    <th scope="col">Group</th>
                    <th scope="col">Devices</th>
                    <th scope="col">Compliant</th>
                    <th scope="col">Compliance</th>
                  </tr>
                </thead>
                <tbody>
                  {d.compliance.byGroup.map((g) => (
                    <tr key={g.group}>
                      <th scope="row">{g.group}</th>
                      <td>{g.devices}</td>
                      <td>{g.compliant}</td>
                      <td>
                        <Progress
                          value={g.percent}
                          max={100}
                          tone={tone(g.percent)}
                          label={`Group ${g.group}: ${g.percent}% compliant`}
                        />
                        <span class="muted">{g.percent}%</span>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          {d.compliance.topMissing.length > 0 ? (
            <>
              <h2>Most missed patches</h2>
              <ol class="history">
                {d.compliance.topMissing.map((p) => (
                  <li key={p.bundleId}>
                    <Badge kind={p.severity}>{p.severity}</Badge> {p.name} {p.version}{' '}
                    <span class="muted">
                      missing on {p.devices} device{p.devices === 1 ? '' : 's'}
                    </span>
                  </li>
                ))}
              </ol>
            </>
          ) : null}
          <h2>Active rollouts</h2>
          {d.rollouts.length === 0 ? <p class="muted">No rollout is running.</p> : null}
          <ul class="cards">
            {d.rollouts.map((r) => (
              <li key={r.id} class="card">
                <h3>
                  <a href={href('rollouts', r.id)}>{r.name}</a>{' '}
                  <span class={`status status-${r.status}`}>{r.status}</span>
                </h3>
                <RingBars rollout={asRollout(r)} />
              </li>
            ))}
          </ul>
          <p class="muted">As of {dateTime(d.generatedAt)}.</p>
        </>
      ) : null}
    </section>
  )
}

function SeverityTable({ summary }: { summary: DashboardSummary }) {
  const by = new Map(summary.compliance.bySeverity.map((s) => [s.severity, s]))
  const total = summary.compliance.devices
  return (
    <table class="compact">
      <caption class="sr-only">Missing patches and compliance by severity</caption>
      <thead>
        <tr>
          <th scope="col">Severity</th>
          <th scope="col">Patches</th>
          <th scope="col">Devices missing</th>
          <th scope="col">Compliant</th>
        </tr>
      </thead>
      <tbody>
        {SEVERITIES.map((s) => {
          const row = by.get(s) ?? { missing: 0, devices: 0, patches: 0 }
          return (
            <tr key={s}>
              <th scope="row">
                <Badge kind={s}>{s}</Badge>
              </th>
              <td data-testid={`missing-${s}`}>{row.patches}</td>
              <td>{row.devices}</td>
              <td>{percent(total - row.devices, total || 1)}</td>
            </tr>
          )
        })}
      </tbody>
    </table>
  )
}

/**
 * WAN bytes against bytes delivered to devices (from the appliance and from peers): the
 * difference is what the swarm saved. Plain SVG with attributes (the CSP allows no inline styles).
 */
function Bandwidth({ bw, wan }: { bw: DashboardSummary['bandwidth']; wan: WanUsage | undefined }) {
  const max = Math.max(bw.wanBytes, bw.deliveredBytes, 1)
  const W = 300
  const scale = (n: number) => (W * n) / max
  const days = (wan?.days ?? []).slice(-14)
  const dayMax = Math.max(1, ...days.map((x) => x.bytes))
  const ratio = bw.wanBytes > 0 ? bw.deliveredBytes / bw.wanBytes : undefined
  return (
    <div class="bandwidth">
      <p class="big" data-testid="bandwidth-saved">
        {bytes(bw.savedBytes)} <span class="muted small-text">bandwidth saved</span>
      </p>
      <p class="muted">
        {ratio !== undefined && ratio >= 1
          ? `Every byte fetched over the WAN reached devices ${ratio.toFixed(1)} times.`
          : 'Delivered bytes beyond what crossed the WAN came from the appliance’s cache and from peers.'}
      </p>
      <svg
        class="chart"
        viewBox="0 0 400 84"
        role="img"
        aria-label={`WAN ${bytes(bw.wanBytes)}; delivered ${bytes(bw.deliveredBytes)}: ${bytes(bw.fromAppliance)} from the appliance, ${bytes(bw.fromPeers)} from peers`}
      >
        <title>WAN bytes against bytes delivered</title>
        <text x="0" y="17" class="chart-label">
          WAN
        </text>
        <rect x="90" y="4" height="18" width={scale(bw.wanBytes)} class="chart-wan" />
        <text x="0" y="47" class="chart-label">
          Delivered
        </text>
        <rect x="90" y="34" height="18" width={scale(bw.fromAppliance)} class="chart-appliance" />
        <rect x={90 + scale(bw.fromAppliance)} y="34" height="18" width={scale(bw.fromPeers)} class="chart-delivered" />
        <rect x="90" y="66" width="10" height="10" class="chart-appliance" />
        <text x="104" y="75" class="chart-label small">
          from the appliance
        </text>
        <rect x="200" y="66" width="10" height="10" class="chart-delivered" />
        <text x="214" y="75" class="chart-label small">
          from peers
        </text>
      </svg>
      <dl class="facts">
        <dt>Downloaded over the WAN</dt>
        <dd data-testid="wan-bytes">{bytes(bw.wanBytes)}</dd>
        <dt>Delivered to devices</dt>
        <dd data-testid="delivered-bytes">{bytes(bw.deliveredBytes)}</dd>
        <dt>from the appliance</dt>
        <dd>{bytes(bw.fromAppliance)}</dd>
        <dt>from peers</dt>
        <dd>{bytes(bw.fromPeers)}</dd>
      </dl>
      {days.length > 0 ? (
        <figure class="chart-figure">
          <svg
            class="chart"
            viewBox={`0 0 ${Math.max(days.length * 20, 100)} 64`}
            role="img"
            aria-label={`WAN bytes per day, last ${days.length} days: ${days.map((x) => `${x.day} ${bytes(x.bytes)}`).join(', ')}`}
          >
            <title>WAN bytes per day</title>
            {days.map((x, i) => {
              const h = (50 * x.bytes) / dayMax
              return (
                <rect key={x.day} x={i * 20 + 3} y={52 - h} width="14" height={h} class="chart-wan">
                  <title>{`${x.day}: ${bytes(x.bytes)}`}</title>
                </rect>
              )
            })}
            <text x="0" y="63" class="chart-label small">
              {days[0]?.day}
            </text>
          </svg>
          <figcaption class="muted">WAN bytes per day (today {bytes(wan?.todayBytes)})</figcaption>
        </figure>
      ) : (
        <p class="muted">No WAN traffic recorded yet.</p>
      )}
    </div>
  )
}
