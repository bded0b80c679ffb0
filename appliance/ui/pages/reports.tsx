import { Fragment } from 'preact'
import { useState } from 'preact/hooks'
import { query, session } from '../api.ts'
import { Badge, ErrorBox, Loading, PageTitle, Progress } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { dateTime, SEVERITIES, shortId } from '../format.ts'
import { href } from '../router.ts'

interface MissingPatch {
  bundleId: string
  name: string
  version: string
  severity: string
}

/** GET /api/v1/reports/compliance (appliance/http/report-routes.ts). */
interface ComplianceReport {
  generatedAt: string
  siteName?: string
  devices: number
  compliant: number
  rows: Array<{
    peerId: string
    hostname: string
    groups: string[]
    required: string[]
    missing: MissingPatch[]
    compliant: boolean
  }>
}

const pct = (part: number, whole: number) => (whole === 0 ? 100 : Math.round((1000 * part) / whole) / 10)

/**
 * The compliance report for auditors: the summary, compliance by group, every device with
 * what it misses, a CSV download, and a printable version (print CSS in main.css).
 */
export function ReportsPage() {
  const [group, setGroup] = useState('')
  const [missingOnly, setMissingOnly] = useState(false)
  const filter = { group: group || undefined, missing: missingOnly ? 'true' : undefined }
  const res = useApi<ComplianceReport>(
    `/api/v1/reports/compliance${query(filter)}`,
    is('device', 'patch', 'approval', 'group', 'rollout'),
  )
  // The groups to choose from: those of the whole fleet (the unfiltered report).
  const all = useApi<ComplianceReport>('/api/v1/reports/compliance', is('device', 'group'))
  const groups = [...new Set((all.data?.rows ?? []).flatMap((r) => r.groups))].sort()
  const r = res.data
  const byGroup = new Map<string, { devices: number; compliant: number }>()
  for (const row of r?.rows ?? [])
    for (const g of row.groups.length > 0 ? row.groups : ['(no group)']) {
      const s = byGroup.get(g) ?? { devices: 0, compliant: 0 }
      s.devices++
      if (row.compliant) s.compliant++
      byGroup.set(g, s)
    }
  const bySeverity = new Map<string, number>()
  for (const row of r?.rows ?? [])
    for (const m of row.missing) bySeverity.set(m.severity, (bySeverity.get(m.severity) ?? 0) + 1)
  const csvHref = `/api/v1/reports/compliance${query({ ...filter, format: 'csv' })}`
  const percent = r ? pct(r.compliant, r.devices) : 0
  return (
    <section class="report">
      <div class="print-header">
        <p class="print-site">patchswarm compliance report — {r?.siteName ?? 'appliance'}</p>
        <p>
          Generated {r ? dateTime(r.generatedAt) : '—'} by {session.value?.username ?? '—'}
          {group ? `; group ${group}` : ''}
          {missingOnly ? '; non-compliant devices only' : ''}
        </p>
      </div>
      <PageTitle>Reports</PageTitle>
      <form class="toolbar no-print" onSubmit={(e) => e.preventDefault()} aria-label="Report filters">
        <label>
          Group
          <select value={group} onChange={(e) => setGroup((e.currentTarget as HTMLSelectElement).value)}>
            <option value="">every device</option>
            {groups.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        </label>
        <label class="check">
          <input
            type="checkbox"
            checked={missingOnly}
            onChange={(e) => setMissingOnly((e.currentTarget as HTMLInputElement).checked)}
          />
          Only devices that miss patches
        </label>
        <a class="button" href={csvHref} download>
          Download CSV
        </a>
        <button type="button" class="primary" onClick={() => window.print()}>
          Print / Save as PDF
        </button>
      </form>
      <ErrorBox error={res.error} title="Could not load the compliance report" />
      {res.loading && !r ? <Loading /> : null}
      {r ? (
        <>
          <section class="report-section" aria-labelledby="rep-summary">
            <h2 id="rep-summary">Summary</h2>
            <div class="tiles">
              <article class="tile">
                <h3>Compliant</h3>
                <p class="big" data-testid="compliance-percent">
                  {percent}%
                </p>
                <Progress
                  value={r.compliant}
                  max={Math.max(r.devices, 1)}
                  tone={percent >= 95 ? 'ok' : percent >= 80 ? 'warn' : 'bad'}
                  label={`${r.compliant} of ${r.devices} devices compliant`}
                />
                <p class="muted">
                  {r.compliant} of {r.devices} device{r.devices === 1 ? '' : 's'} have every approved patch
                  {r.devices === 0 ? ' (no device in this selection)' : ''}.
                </p>
              </article>
              <article class="tile">
                <h3>Missing patches by severity</h3>
                <dl class="facts">
                  {SEVERITIES.map((s) => (
                    <Fragment key={s}>
                      <dt>{s}</dt>
                      <dd>{bySeverity.get(s) ?? 0}</dd>
                    </Fragment>
                  ))}
                </dl>
              </article>
            </div>
          </section>
          <section class="report-section" aria-labelledby="rep-groups">
            <h2 id="rep-groups">By group</h2>
            {byGroup.size === 0 ? <p class="muted">No device.</p> : null}
            {byGroup.size > 0 ? (
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th scope="col">Group</th>
                      <th scope="col">Devices</th>
                      <th scope="col">Compliant</th>
                      <th scope="col">Compliance</th>
                    </tr>
                  </thead>
                  <tbody>
                    {[...byGroup.entries()]
                      .sort(([a], [b]) => a.localeCompare(b))
                      .map(([g, s]) => (
                        <tr key={g}>
                          <th scope="row">{g}</th>
                          <td>{s.devices}</td>
                          <td>{s.compliant}</td>
                          <td>{pct(s.compliant, s.devices)}%</td>
                        </tr>
                      ))}
                  </tbody>
                </table>
              </div>
            ) : null}
          </section>
          <section class="report-section" aria-labelledby="rep-devices">
            <h2 id="rep-devices">Devices</h2>
            {r.rows.length === 0 ? <p class="muted">No device in this selection.</p> : null}
            {r.rows.length > 0 ? (
              <div class="table-wrap">
                <table>
                  <caption class="sr-only">Compliance per device</caption>
                  <thead>
                    <tr>
                      <th scope="col">Device</th>
                      <th scope="col">Groups</th>
                      <th scope="col">Status</th>
                      <th scope="col">Required</th>
                      <th scope="col">Missing patches</th>
                    </tr>
                  </thead>
                  <tbody>
                    {[...r.rows]
                      .sort((a, b) => Number(a.compliant) - Number(b.compliant) || a.hostname.localeCompare(b.hostname))
                      .map((row) => (
                        <tr key={row.peerId}>
                          <th scope="row">
                            <a href={href('devices', row.peerId)}>{row.hostname}</a>
                            <div class="muted mono">{shortId(row.peerId, 20)}</div>
                          </th>
                          <td>{row.groups.join(', ') || '—'}</td>
                          <td>
                            {row.compliant ? (
                              <Badge kind="approve">compliant</Badge>
                            ) : (
                              <Badge kind="decline">not compliant</Badge>
                            )}
                          </td>
                          <td>{row.required.length}</td>
                          <td>
                            {row.missing.length === 0 ? (
                              '—'
                            ) : (
                              <ul class="plain">
                                {row.missing.map((m) => (
                                  <li key={m.bundleId}>
                                    <Badge kind={m.severity}>{m.severity}</Badge> {m.name} {m.version}
                                  </li>
                                ))}
                              </ul>
                            )}
                          </td>
                        </tr>
                      ))}
                  </tbody>
                </table>
              </div>
            ) : null}
          </section>
        </>
      ) : null}
    </section>
  )
}
