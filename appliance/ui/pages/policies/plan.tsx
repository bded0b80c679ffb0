import { can, type Patch } from '../../api.ts'
import { ErrorBox, Loading } from '../../components.tsx'
import { is, useApi } from '../../data.ts'
import { dateTime, shortId } from '../../format.ts'
import type { GroupPlan } from '../../policy-types.ts'
import { DeployPlan } from './deploy-plan.tsx'

export const HELD: Record<string, string> = {
  'declined-site-wide': 'declined site-wide',
  superseded: 'superseded by a newer approved patch',
  'missing-prerequisite': 'a prerequisite is not approved',
  'prerequisite-cycle': 'prerequisites form a cycle',
}

export function PlanSection() {
  const res = useApi<{ groups: Record<string, GroupPlan> }>('/api/v1/plan', is('approval', 'patch', 'group'))
  const patches = useApi<{ patches: Patch[] }>('/api/v1/patches', is('patch'))
  const names = new Map((patches.data?.patches ?? []).map((p) => [p.bundleId, `${p.name} ${p.version}`]))
  const entries = Object.entries(res.data?.groups ?? {}).sort((a, b) => a[0].localeCompare(b[0]))
  const anything = entries.some(([, p]) => p.deploy.length > 0)
  return (
    <section aria-labelledby="p-plan">
      <h2 id="p-plan" tabIndex={-1}>
        Approval plan
      </h2>
      <p class="muted">
        What each group should get, in install order (prerequisites first), after supersedence; approved patches that
        are held, and why.
      </p>
      <ErrorBox error={res.error} title="Could not load the plan" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data && entries.length === 0 ? <p class="muted">No group yet: create one above.</p> : null}
      {entries.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">The plan per group</caption>
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Deploy, in order</th>
                <th scope="col">Held</th>
              </tr>
            </thead>
            <tbody>
              {entries.map(([group, p]) => (
                <tr key={group}>
                  <th scope="row">{group}</th>
                  <td>
                    {p.deploy.length === 0 ? (
                      <span class="muted">nothing approved</span>
                    ) : (
                      <ol class="compact-list">
                        {p.deploy.map((x) => (
                          <li key={x.bundleId}>
                            {names.get(x.bundleId) ?? x.name}
                            {x.deadline ? <span class="muted"> by {dateTime(x.deadline)}</span> : null}
                            {x.after.length ? (
                              <span class="muted">
                                {' '}
                                after {x.after.map((a) => names.get(a) ?? shortId(a)).join(', ')}
                              </span>
                            ) : null}
                          </li>
                        ))}
                      </ol>
                    )}
                  </td>
                  <td>
                    {p.held.length === 0 ? (
                      '—'
                    ) : (
                      <ul class="compact-list">
                        {p.held.map((h) => (
                          <li key={h.bundleId}>
                            {names.get(h.bundleId) ?? shortId(h.bundleId)}:{' '}
                            <strong>{HELD[h.reason] ?? h.reason}</strong>
                            {h.detail ? <span class="muted"> ({h.detail})</span> : null}
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
      {can('operate') && anything ? <DeployPlan names={names} /> : null}
    </section>
  )
}
