import type { ComponentChildren } from 'preact'
import { useState } from 'preact/hooks'
import { api, can } from '../../api.ts'
import { ConfirmButton, ErrorBox, FieldError, Loading, useAction } from '../../components.tsx'
import { is, useApi } from '../../data.ts'
import { errorFor, listOf } from '../../field-errors.ts'
import { SEVERITIES } from '../../format.ts'
import { type AutoApprovalRule, CLASSIFICATIONS, type GroupDef } from '../../policy-types.ts'

export function ruleText(r: AutoApprovalRule): ComponentChildren {
  return (
    <>
      {r.classifications?.length ? r.classifications.join(', ') : 'any classification'} ×{' '}
      {r.products?.length ? r.products.join(', ') : 'any product'} ×{' '}
      {r.severities?.length ? r.severities.join(', ') : 'any severity'}
    </>
  )
}

export function RulesSection() {
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

export function RuleForm({
  rule,
  groups,
  done,
}: {
  rule: AutoApprovalRule | undefined
  groups: string[]
  done: () => void
}) {
  const { busy, error, run } = useAction()
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
    await run(async () => {
      await api('PUT', `/api/v1/approval-rules/${encodeURIComponent(id)}`, body)
      done()
    })
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
