import { useState } from 'preact/hooks'
import { api, can, type Device } from '../../api.ts'
import { ConfirmButton, ErrorBox, Loading } from '../../components.tsx'
import { is, useApi } from '../../data.ts'
import type { GroupDef, GroupMatch } from '../../policy-types.ts'
import { href } from '../../router.ts'
import { GroupForm } from './group-form.tsx'

export function matchText(m: GroupMatch): string {
  const parts: string[] = []
  if (m.tags?.all) parts.push(`tags all of ${m.tags.all.join(', ')}`)
  if (m.tags?.any) parts.push(`tags any of ${m.tags.any.join(', ')}`)
  if (m.tiers) parts.push(`tier ${m.tiers.join(' or ')}`)
  if (m.os) parts.push(`OS ${m.os.join(' or ')}`)
  if (m.hostnamePattern) parts.push(`host ${m.hostnamePattern}`)
  if (m.peerIds) parts.push(`${m.peerIds.length} listed device${m.peerIds.length === 1 ? '' : 's'}`)
  return parts.join('; ') || 'every device'
}

export function GroupsSection() {
  const res = useApi<{ groups: GroupDef[] }>('/api/v1/groups', is('group', 'device'))
  const [editing, setEditing] = useState<GroupDef | 'new' | null>(null)
  const [members, setMembers] = useState<string | null>(null)
  const operate = can('operate')
  const groups = [...(res.data?.groups ?? [])].sort((a, b) => a.id.localeCompare(b.id))
  return (
    <section aria-labelledby="p-groups">
      <h2 id="p-groups" tabIndex={-1}>
        Groups
      </h2>
      <p class="muted">
        A group is a filter over devices; membership follows tags, tier, OS and host name as they change. Approvals,
        rollouts and maintenance windows are per group.
      </p>
      {operate && editing === null ? (
        <p>
          <button type="button" class="primary" onClick={() => setEditing('new')}>
            New group
          </button>
        </p>
      ) : null}
      {editing !== null ? (
        <GroupForm
          key={editing === 'new' ? 'new' : editing.id}
          group={editing === 'new' ? undefined : editing}
          done={() => {
            setEditing(null)
            res.reload()
          }}
        />
      ) : null}
      <ErrorBox error={res.error} title="Could not load the groups" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data && groups.length === 0 ? <p class="muted">No group yet.</p> : null}
      {groups.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Device groups</caption>
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Members</th>
                <th scope="col">Filter</th>
                <th scope="col">Windows</th>
                {operate ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {groups.map((g) => (
                <tr key={g.id}>
                  <th scope="row">
                    {g.name} <span class="muted mono">{g.id}</span>
                    {g.description ? <div class="muted">{g.description}</div> : null}
                  </th>
                  <td>
                    <button
                      type="button"
                      class="link"
                      aria-expanded={members === g.id}
                      onClick={() => setMembers(members === g.id ? null : g.id)}
                    >
                      {g.memberCount ?? 0} device{g.memberCount === 1 ? '' : 's'}
                    </button>
                    {members === g.id ? <Members id={g.id} /> : null}
                  </td>
                  <td>{matchText(g.match)}</td>
                  <td>
                    {g.windows?.length ? (
                      <a href="#/windows">
                        {g.windows.length} window{g.windows.length === 1 ? '' : 's'}
                      </a>
                    ) : (
                      <span class="muted">none</span>
                    )}
                  </td>
                  {operate ? (
                    <td class="decide">
                      <button type="button" onClick={() => setEditing(g)} aria-label={`Edit group ${g.id}`}>
                        Edit
                      </button>
                      <ConfirmButton
                        label={`Delete ${g.id}`}
                        title={`Delete group ${g.id}?`}
                        message="Its approvals stay in the audit log; devices keep their tags. Rollouts targeting it find no devices."
                        confirmLabel="Delete"
                        danger
                        onConfirm={async () => {
                          await api('DELETE', `/api/v1/groups/${encodeURIComponent(g.id)}`)
                          res.reload()
                        }}
                      />
                    </td>
                  ) : null}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  )
}

export function Members({ id }: { id: string }) {
  const res = useApi<{ total: number; devices: Device[] }>(
    `/api/v1/groups/${encodeURIComponent(id)}/members?limit=200`,
    is('device', 'group'),
  )
  if (res.error) return <ErrorBox error={res.error} />
  if (!res.data) return <Loading />
  if (res.data.devices.length === 0) return <p class="muted">No member.</p>
  return (
    <ul class="plain">
      {res.data.devices.map((d) => (
        <li key={d.peerId}>
          <a href={href('devices', d.peerId)}>{d.hostname}</a>
        </li>
      ))}
      {res.data.total > res.data.devices.length ? (
        <li class="muted">and {res.data.total - res.data.devices.length} more</li>
      ) : null}
    </ul>
  )
}
