import type { ComponentChildren } from 'preact'
import { useState } from 'preact/hooks'
import { api, can, type Device, type Patch, post, type Rollout } from '../api.ts'
import { ConfirmButton, ErrorBox, Loading, PageTitle } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { errorFor, listOf } from '../field-errors.ts'
import { dateTime, SEVERITIES, shortId } from '../format.ts'
import {
  type AutoApprovalRule,
  CLASSIFICATIONS,
  type GroupDef,
  type GroupMatch,
  type GroupPlan,
  groupUpdate,
  TIERS,
} from '../policy-types.ts'
import { href } from '../router.ts'
import { DEFAULT_RINGS, type RingDraft, ringSpec } from './rollouts.tsx'

/**
 * Policies: device groups (filters over tags, tier, OS, host name), auto-approval rules,
 * device tags and tiers, and the approval plan per group with "Deploy the plan". Reads for
 * every role; changes for operators (the server enforces it, the page hides the forms).
 */
export function PoliciesPage() {
  return (
    <section>
      <PageTitle>Policies</PageTitle>
      <nav aria-label="On this page" class="toc">
        {(
          [
            ['p-groups', 'Groups'],
            ['p-rules', 'Auto-approval rules'],
            ['p-tags', 'Device tags and tiers'],
            ['p-plan', 'Plan'],
          ] as const
        ).map(([id, label], i) => (
          <span key={id}>
            {i > 0 ? ' · ' : ''}
            <button type="button" class="link" onClick={jump(id)}>
              {label}
            </button>
          </span>
        ))}
      </nav>
      <GroupsSection />
      <RulesSection />
      <TagsSection />
      <PlanSection />
    </section>
  )
}

/** In-page links without touching the hash (the hash is the route). */
const jump = (id: string) => () => {
  const el = document.getElementById(id)
  el?.scrollIntoView()
  el?.focus({ preventScroll: true })
}

/** A message under a field, tied to it with aria-describedby. */
export function FieldError({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null
  return (
    <span class="error-inline" id={id} role="alert">
      {message}
    </span>
  )
}

const invalid = (msg: string | undefined, id: string) =>
  msg ? { 'aria-invalid': true as const, 'aria-describedby': id } : {}

// ---- Groups ----

function matchText(m: GroupMatch): string {
  const parts: string[] = []
  if (m.tags?.all) parts.push(`tags all of ${m.tags.all.join(', ')}`)
  if (m.tags?.any) parts.push(`tags any of ${m.tags.any.join(', ')}`)
  if (m.tiers) parts.push(`tier ${m.tiers.join(' or ')}`)
  if (m.os) parts.push(`OS ${m.os.join(' or ')}`)
  if (m.hostnamePattern) parts.push(`host ${m.hostnamePattern}`)
  if (m.peerIds) parts.push(`${m.peerIds.length} listed device${m.peerIds.length === 1 ? '' : 's'}`)
  return parts.join('; ') || 'every device'
}

function GroupsSection() {
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

function Members({ id }: { id: string }) {
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

function GroupForm({ group, done }: { group: GroupDef | undefined; done: () => void }) {
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  const m = group?.match ?? {}
  const submit = async (e: Event) => {
    e.preventDefault()
    const f = new FormData(e.currentTarget as HTMLFormElement)
    const text = (k: string) => String(f.get(k) ?? '').trim()
    const all = listOf(text('tagsAll'))
    const any = listOf(text('tagsAny'))
    const tiers = f.getAll('tiers').map(String)
    const os = listOf(text('os'))
    const peerIds = listOf(text('peerIds'))
    const match: GroupMatch = {
      ...(all.length || any.length ? { tags: { ...(all.length ? { all } : {}), ...(any.length ? { any } : {}) } } : {}),
      ...(tiers.length ? { tiers } : {}),
      ...(os.length ? { os } : {}),
      ...(text('hostnamePattern') ? { hostnamePattern: text('hostnamePattern') } : {}),
      ...(peerIds.length ? { peerIds } : {}),
    }
    const description = text('description')
    setBusy(true)
    setError(undefined)
    try {
      if (group) {
        await api(
          'PUT',
          `/api/v1/groups/${encodeURIComponent(group.id)}`,
          groupUpdate(group, { name: text('name'), description, match }),
        )
      } else {
        await post('/api/v1/groups', {
          id: text('id'),
          name: text('name'),
          ...(description ? { description } : {}),
          match,
        })
      }
      done()
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  const err = (...fields: string[]) => errorFor(error, ...fields)
  const fieldErr = (id: string, ...fields: string[]) => <FieldError id={`ge-${id}`} message={err(...fields)} />
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="group-form">
      <h3 id="group-form">{group ? `Edit group ${group.id}` : 'New group'}</h3>
      <div class="grid2">
        {group ? null : (
          <label>
            Group id <span class="muted">(lower case letters, digits, _ -)</span>
            <input name="id" required maxLength={64} pattern="[a-z0-9][a-z0-9_\-]*" {...invalid(err('id'), 'ge-id')} />
            {fieldErr('id', 'id')}
          </label>
        )}
        <label>
          Group name
          <input name="name" required maxLength={100} defaultValue={group?.name ?? ''} />
          {fieldErr('name', 'name')}
        </label>
        <label>
          Description
          <input name="description" maxLength={500} defaultValue={group?.description ?? ''} />
        </label>
      </div>
      <fieldset>
        <legend>Members: devices matching every filter given (none: every device)</legend>
        <div class="grid2">
          <label>
            Has all of these tags <span class="muted">(comma-separated)</span>
            <input
              name="tagsAll"
              defaultValue={m.tags?.all?.join(', ') ?? ''}
              {...invalid(err('match.tags'), 'ge-tags')}
            />
          </label>
          <label>
            Has any of these tags
            <input name="tagsAny" defaultValue={m.tags?.any?.join(', ') ?? ''} />
            {fieldErr('tags', 'match.tags')}
          </label>
          <label>
            OS <span class="muted">(globs: linux, windows, ubuntu-24.04, debian*)</span>
            <input name="os" defaultValue={m.os?.join(', ') ?? ''} {...invalid(err('match.os'), 'ge-os')} />
            {fieldErr('os', 'match.os')}
          </label>
          <label>
            Host name pattern <span class="muted">(glob: ber-*)</span>
            <input
              name="hostnamePattern"
              defaultValue={m.hostnamePattern ?? ''}
              {...invalid(err('match.hostnamePattern'), 'ge-host')}
            />
            {fieldErr('host', 'match.hostnamePattern')}
          </label>
        </div>
        <fieldset class="inline-checks">
          <legend>Tier</legend>
          {TIERS.map((t) => (
            <label class="check" key={t}>
              <input type="checkbox" name="tiers" value={t} defaultChecked={m.tiers?.includes(t) ?? false} /> {t}
            </label>
          ))}
        </fieldset>
        <label>
          Only these devices <span class="muted">(PeerIds, comma- or space-separated; optional)</span>
          <textarea
            name="peerIds"
            rows={2}
            defaultValue={m.peerIds?.join('\n') ?? ''}
            {...invalid(err('match.peerIds'), 'ge-peers')}
          />
          {fieldErr('peers', 'match.peerIds')}
        </label>
      </fieldset>
      <ErrorBox error={error} title="The group was not saved" />
      <div class="actions">
        <button type="button" onClick={done}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : group ? 'Save group' : 'Create group'}
        </button>
      </div>
    </form>
  )
}

// ---- Auto-approval rules ----

function ruleText(r: AutoApprovalRule): ComponentChildren {
  return (
    <>
      {r.classifications?.length ? r.classifications.join(', ') : 'any classification'} ×{' '}
      {r.products?.length ? r.products.join(', ') : 'any product'} ×{' '}
      {r.severities?.length ? r.severities.join(', ') : 'any severity'}
    </>
  )
}

function RulesSection() {
  const res = useApi<{ rules: AutoApprovalRule[] }>('/api/v1/approval-rules', is('approval'))
  const groups = useApi<{ groups: GroupDef[] }>('/api/v1/groups', is('group'))
  const [editing, setEditing] = useState<AutoApprovalRule | 'new' | null>(null)
  const operate = can('operate')
  const rules = res.data?.rules ?? []
  return (
    <section aria-labelledby="p-rules">
      <h2 id="p-rules" tabIndex={-1}>
        Auto-approval rules
      </h2>
      <p class="muted">
        A new patch matching a rule (classification × product globs × severity) is approved for the rule’s group, with a
        deadline that many days later. A person’s own decision for the group wins; a site-wide decline stops every rule.
      </p>
      {operate && editing === null ? (
        <p>
          <button type="button" class="primary" onClick={() => setEditing('new')}>
            New rule
          </button>
        </p>
      ) : null}
      {editing !== null ? (
        <RuleForm
          key={editing === 'new' ? 'new' : editing.id}
          rule={editing === 'new' ? undefined : editing}
          groups={(groups.data?.groups ?? []).map((g) => g.id)}
          done={() => {
            setEditing(null)
            res.reload()
          }}
        />
      ) : null}
      <ErrorBox error={res.error} title="Could not load the rules" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data && rules.length === 0 ? <p class="muted">No auto-approval rule.</p> : null}
      {rules.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Auto-approval rules</caption>
            <thead>
              <tr>
                <th scope="col">Rule</th>
                <th scope="col">Takes</th>
                <th scope="col">Approves for</th>
                <th scope="col">Deadline</th>
                {operate ? <th scope="col">Actions</th> : null}
              </tr>
            </thead>
            <tbody>
              {rules.map((r) => (
                <tr key={r.id}>
                  <th scope="row" class="mono">
                    {r.id}
                  </th>
                  <td>{ruleText(r)}</td>
                  <td>{r.group}</td>
                  <td>{r.deadlineDays === undefined ? '—' : `${r.deadlineDays} days`}</td>
                  {operate ? (
                    <td class="decide">
                      <button type="button" onClick={() => setEditing(r)} aria-label={`Edit rule ${r.id}`}>
                        Edit
                      </button>
                      <ConfirmButton
                        label={`Delete rule ${r.id}`}
                        title={`Delete rule ${r.id}?`}
                        message="Approvals it already made stay."
                        confirmLabel="Delete"
                        danger
                        onConfirm={async () => {
                          await api('DELETE', `/api/v1/approval-rules/${encodeURIComponent(r.id)}`)
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

function RuleForm({ rule, groups, done }: { rule: AutoApprovalRule | undefined; groups: string[]; done: () => void }) {
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  const submit = async (e: Event) => {
    e.preventDefault()
    const f = new FormData(e.currentTarget as HTMLFormElement)
    const id = rule?.id ?? String(f.get('id') ?? '').trim()
    const classifications = f.getAll('classifications').map(String)
    const severities = f.getAll('severities').map(String)
    const products = listOf(String(f.get('products') ?? ''))
    const days = String(f.get('deadlineDays') ?? '').trim()
    const body: AutoApprovalRule = {
      id,
      group: String(f.get('group') ?? '').trim(),
      ...(classifications.length ? { classifications } : {}),
      ...(severities.length ? { severities } : {}),
      ...(products.length ? { products } : {}),
      ...(days === '' ? {} : { deadlineDays: Number(days) }),
    }
    setBusy(true)
    setError(undefined)
    try {
      await api('PUT', `/api/v1/approval-rules/${encodeURIComponent(id)}`, body)
      done()
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  const err = (...f: string[]) => errorFor(error, ...f)
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="rule-form">
      <h3 id="rule-form">{rule ? `Edit rule ${rule.id}` : 'New auto-approval rule'}</h3>
      <div class="grid2">
        {rule ? null : (
          <label>
            Rule id
            <input name="id" required maxLength={64} pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" />
            <FieldError id="re-id" message={err('id')} />
          </label>
        )}
        <label>
          Approve for group
          <input name="group" required list="rule-groups" defaultValue={rule?.group ?? ''} />
          <datalist id="rule-groups">
            {groups.map((g) => (
              <option key={g} value={g} />
            ))}
          </datalist>
          <FieldError id="re-group" message={err('group')} />
        </label>
        <label>
          Products <span class="muted">(globs, comma-separated; empty: any)</span>
          <input name="products" defaultValue={rule?.products?.join(', ') ?? ''} />
          <FieldError id="re-products" message={err('products')} />
        </label>
        <label>
          Deadline (days after approval; empty: none)
          <input name="deadlineDays" type="number" min={0} max={365} defaultValue={rule?.deadlineDays ?? ''} />
          <FieldError id="re-days" message={err('deadlineDays')} />
        </label>
      </div>
      <fieldset class="inline-checks">
        <legend>Classifications (none: any)</legend>
        {CLASSIFICATIONS.map((c) => (
          <label class="check" key={c}>
            <input
              type="checkbox"
              name="classifications"
              value={c}
              defaultChecked={rule?.classifications?.includes(c) ?? false}
            />{' '}
            {c}
          </label>
        ))}
      </fieldset>
      <fieldset class="inline-checks">
        <legend>Severities (none: any)</legend>
        {SEVERITIES.map((s) => (
          <label class="check" key={s}>
            <input
              type="checkbox"
              name="severities"
              value={s}
              defaultChecked={rule?.severities?.includes(s) ?? false}
            />{' '}
            {s}
          </label>
        ))}
      </fieldset>
      <ErrorBox error={error} title="The rule was not saved" />
      <div class="actions">
        <button type="button" onClick={done}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : rule ? 'Save rule' : 'Create rule'}
        </button>
      </div>
    </form>
  )
}

// ---- Device tags and tiers ----

function TagsSection() {
  const [q, setQ] = useState('')
  const res = useApi<{ total: number; devices: Device[] }>(
    `/api/v1/devices?limit=500${q ? `&q=${encodeURIComponent(q)}` : ''}`,
    is('device'),
  )
  const operate = can('operate')
  const list = res.data?.devices ?? []
  return (
    <section aria-labelledby="p-tags">
      <h2 id="p-tags" tabIndex={-1}>
        Device tags and tiers
      </h2>
      <p class="muted">Tags and the criticality tier decide group membership (and tags are groups of their own).</p>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()}>
        <label>
          Filter devices
          <input
            type="search"
            placeholder="host name, PeerId or tag"
            onChange={(e) => setQ((e.currentTarget as HTMLInputElement).value.trim())}
          />
        </label>
        {res.data ? (
          <span class="muted" role="status">
            {res.data.total} device{res.data.total === 1 ? '' : 's'}
            {res.data.total > list.length ? `, first ${list.length} shown` : ''}
          </span>
        ) : null}
      </form>
      <ErrorBox error={res.error} title="Could not load the devices" />
      {res.data && list.length === 0 ? <p class="muted">No device.</p> : null}
      {list.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Tags and tier of each device</caption>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Tags</th>
                <th scope="col">Tier</th>
                {operate ? <th scope="col">Save</th> : null}
              </tr>
            </thead>
            <tbody>
              {list.map((d) =>
                operate ? (
                  <TagRow key={`${d.peerId}:${d.tags.join(',')}:${d.tier}`} device={d} />
                ) : (
                  <tr key={d.peerId}>
                    <th scope="row">
                      <a href={href('devices', d.peerId)}>{d.hostname}</a>
                    </th>
                    <td>{d.tags.join(', ') || '—'}</td>
                    <td>{d.tier}</td>
                  </tr>
                ),
              )}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  )
}

function TagRow({ device }: { device: Device }) {
  const [tags, setTags] = useState(device.tags.join(', '))
  const [tier, setTier] = useState(device.tier)
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  const [saved, setSaved] = useState(false)
  const base = `/api/v1/devices/${encodeURIComponent(device.peerId)}`
  const save = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setError(undefined)
    setSaved(false)
    try {
      const next = listOf(tags)
      if (next.join(',') !== device.tags.join(',')) await api('PUT', `${base}/tags`, { tags: next })
      if (tier !== device.tier) await api('PUT', `${base}/tier`, { tier })
      setSaved(true)
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  const errId = `te-${device.peerId}`
  return (
    <tr>
      <th scope="row">
        <a href={href('devices', device.peerId)}>{device.hostname}</a>
        <div class="muted mono">{shortId(device.peerId, 20)}</div>
      </th>
      <td>
        <input
          aria-label={`Tags of ${device.hostname}`}
          value={tags}
          form={`tf-${device.peerId}`}
          onInput={(e) => setTags(e.currentTarget.value)}
          {...invalid(error ? 'x' : undefined, errId)}
        />
        {error ? (
          <div class="error-inline" id={errId} role="alert">
            {(error as Error).message}
          </div>
        ) : null}
      </td>
      <td>
        <select
          aria-label={`Tier of ${device.hostname}`}
          value={tier}
          form={`tf-${device.peerId}`}
          onChange={(e) => setTier(e.currentTarget.value)}
        >
          {TIERS.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </td>
      <td>
        <form id={`tf-${device.peerId}`} onSubmit={save}>
          <button type="submit" disabled={busy} aria-label={`Save tags and tier of ${device.hostname}`}>
            {busy ? 'Saving…' : 'Save'}
          </button>{' '}
          {saved ? (
            <span class="muted" role="status">
              Saved
            </span>
          ) : null}
        </form>
      </td>
    </tr>
  )
}

// ---- The plan ----

const HELD: Record<string, string> = {
  'declined-site-wide': 'declined site-wide',
  superseded: 'superseded by a newer approved patch',
  'missing-prerequisite': 'a prerequisite is not approved',
  'prerequisite-cycle': 'prerequisites form a cycle',
}

interface DeployResult {
  created: Rollout[]
  skipped: Array<{ bundleId: string; reason: string; detail: string }>
  failed: Array<{ bundleId: string; id: string; error: { code: string; message: string } }>
}

function PlanSection() {
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

function DeployPlan({ names }: { names: Map<string, string> }) {
  const [rings, setRings] = useState<RingDraft[]>(DEFAULT_RINGS)
  const [retries, setRetries] = useState('2')
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  const [result, setResult] = useState<DeployResult | undefined>(undefined)
  const update = (i: number, patch: Partial<RingDraft>) =>
    setRings(rings.map((r, j) => (j === i ? { ...r, ...patch } : r)))
  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    setError(undefined)
    try {
      setResult(
        await post<DeployResult>('/api/v1/plan/rollouts', { rings: rings.map(ringSpec), retries: Number(retries) }),
      )
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="deploy-plan">
      <h3 id="deploy-plan">Deploy the plan</h3>
      <p class="muted">
        One rollout per planned patch, targeting the groups whose plan has it, with this ring template. Patches that
        already have a live rollout are skipped.
      </p>
      <div class="table-wrap">
        <table class="compact">
          <caption class="sr-only">Ring template</caption>
          <thead>
            <tr>
              <th scope="col">Ring</th>
              <th scope="col">Devices</th>
              <th scope="col">Value</th>
              <th scope="col">Success ≥ %</th>
              <th scope="col">Halt at % failed</th>
              <th scope="col">Soak (min)</th>
              <th scope="col">Gate</th>
              <th scope="col">
                <span class="sr-only">Remove</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rings.map((r, i) => (
              <tr key={i}>
                <td>
                  <input
                    aria-label={`Ring ${i + 1} name`}
                    value={r.name}
                    required
                    onInput={(e) => update(i, { name: e.currentTarget.value })}
                  />
                </td>
                <td>
                  <select
                    aria-label={`Ring ${i + 1} devices`}
                    value={r.kind}
                    onChange={(e) => update(i, { kind: e.currentTarget.value as RingDraft['kind'] })}
                  >
                    <option value="count">a number</option>
                    <option value="percent">a percentage</option>
                    <option value="groups">groups</option>
                    <option value="rest">the rest</option>
                  </select>
                </td>
                <td>
                  {r.kind === 'rest' ? (
                    <span class="muted">—</span>
                  ) : (
                    <input
                      aria-label={`Ring ${i + 1} ${r.kind}`}
                      value={r.value}
                      required
                      size={8}
                      onInput={(e) => update(i, { value: e.currentTarget.value })}
                    />
                  )}
                </td>
                <td>
                  <input
                    aria-label={`Ring ${i + 1} success threshold`}
                    type="number"
                    min={0}
                    max={100}
                    value={r.success}
                    required
                    onInput={(e) => update(i, { success: e.currentTarget.value })}
                  />
                </td>
                <td>
                  <input
                    aria-label={`Ring ${i + 1} error threshold`}
                    type="number"
                    min={0}
                    max={100}
                    value={r.error}
                    required
                    onInput={(e) => update(i, { error: e.currentTarget.value })}
                  />
                </td>
                <td>
                  <input
                    aria-label={`Ring ${i + 1} soak minutes`}
                    type="number"
                    min={0}
                    value={r.soak}
                    onInput={(e) => update(i, { soak: e.currentTarget.value })}
                  />
                </td>
                <td>
                  <input
                    aria-label={`Ring ${i + 1}: wait for approval`}
                    type="checkbox"
                    checked={r.gate}
                    onChange={(e) => update(i, { gate: e.currentTarget.checked })}
                  />
                </td>
                <td>
                  <button
                    type="button"
                    disabled={rings.length === 1}
                    onClick={() => setRings(rings.filter((_, j) => j !== i))}
                  >
                    Remove ring {i + 1}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="actions">
        <button
          type="button"
          disabled={rings.length >= 16}
          onClick={() =>
            setRings([
              ...rings,
              {
                name: `ring-${rings.length + 1}`,
                kind: 'percent',
                value: '50',
                success: '95',
                error: '5',
                soak: '0',
                gate: false,
              },
            ])
          }
        >
          Add a ring
        </button>
        <label>
          Retries per device
          <input
            type="number"
            min={0}
            max={10}
            value={retries}
            required
            onInput={(e) => setRetries(e.currentTarget.value)}
          />
        </label>
      </div>
      <ErrorBox error={error} title="The plan was not deployed" />
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Deploying…' : 'Deploy the plan'}
        </button>
      </div>
      {result ? (
        <div role="status" class="deploy-result">
          <p>
            <strong>{result.created.length}</strong> created, <strong>{result.skipped.length}</strong> skipped,{' '}
            <strong>{result.failed.length}</strong> failed.
          </p>
          <ul class="compact-list">
            {result.created.map((r) => (
              <li key={r.id}>
                Created <a href={href('rollouts', r.id)}>{r.name}</a>{' '}
                <span class="muted">for {r.spec.target === 'all' ? 'all devices' : r.spec.target.join(', ')}</span>
              </li>
            ))}
            {result.skipped.map((s) => (
              <li key={`s-${s.bundleId}`}>
                Skipped {names.get(s.bundleId) ?? shortId(s.bundleId)}: {s.detail || s.reason}
              </li>
            ))}
            {result.failed.map((f) => (
              <li key={`f-${f.bundleId}`} class="error-inline">
                Failed {names.get(f.bundleId) ?? shortId(f.bundleId)}: {f.error.message} <code>{f.error.code}</code>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </form>
  )
}
