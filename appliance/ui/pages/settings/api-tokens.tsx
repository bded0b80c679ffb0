import { useState } from 'preact/hooks'
import { post, type Role } from '../../api.ts'
import { ConfirmButton, ErrorBox } from '../../components.tsx'
import { useApi } from '../../data.ts'
import { ago, dateTime } from '../../format.ts'
import { del } from './requests.ts'
import { Secret } from './secret.tsx'
import { Section } from './section.tsx'
import { ROLES } from './users.tsx'

export interface ApiTokenView {
  id: string
  name: string
  role: Role
  createdAt: string
  createdBy: string
  expiresAt?: string
  lastUsedAt?: string
}

export function ApiTokensSection() {
  const res = useApi<{ tokens: ApiTokenView[] }>('/api/v1/api-tokens', () => false)
  const [name, setName] = useState('')
  const [role, setRole] = useState<Role>('viewer')
  const [expires, setExpires] = useState('')
  const [error, setError] = useState<unknown>(undefined)
  const [created, setCreated] = useState<(ApiTokenView & { token: string }) | undefined>(undefined)
  return (
    <Section id="settings-api-tokens" title="API tokens">
      <p class="muted">
        For scripts and the MSP: sent as <code>Authorization: Bearer psw_…</code>. The secret is shown once, when the
        token is created.
      </p>
      <ErrorBox error={res.error} title="Could not load the API tokens" />
      {res.data && res.data.tokens.length === 0 ? <p class="muted">No API token.</p> : null}
      {res.data && res.data.tokens.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">API tokens</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Role</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">Last used</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {res.data.tokens.map((t) => (
                <tr key={t.id}>
                  <th scope="row">
                    {t.name}
                    <div class="muted mono">{t.id}</div>
                  </th>
                  <td>{t.role}</td>
                  <td>
                    {dateTime(t.createdAt)} <span class="muted">by {t.createdBy}</span>
                  </td>
                  <td>{t.expiresAt ? dateTime(t.expiresAt) : 'never'}</td>
                  <td>{t.lastUsedAt ? ago(t.lastUsedAt) : 'never'}</td>
                  <td>
                    <ConfirmButton
                      label={`Revoke ${t.name}`}
                      title={`Revoke the API token ${t.name}?`}
                      message="Scripts using it are refused from now on."
                      danger
                      onConfirm={async () => {
                        await del(`/api/v1/api-tokens/${encodeURIComponent(t.id)}`)
                        if (created?.id === t.id) setCreated(undefined)
                        res.reload()
                      }}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <form
        class="card stack"
        aria-labelledby="new-token-h"
        onSubmit={async (e) => {
          e.preventDefault()
          setError(undefined)
          setCreated(undefined)
          try {
            const iso = expires ? new Date(expires).toISOString() : undefined
            const t = await post<ApiTokenView & { token: string }>('/api/v1/api-tokens', {
              name,
              role,
              ...(iso ? { expiresAt: iso } : {}),
            })
            setCreated(t)
            setName('')
            setExpires('')
            res.reload()
          } catch (err) {
            setError(err)
          }
        }}
      >
        <h3 id="new-token-h">New API token</h3>
        <div class="grid2">
          <label>
            Token name
            <input
              type="text"
              required
              maxLength={100}
              value={name}
              onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
              placeholder="e.g. msp-monitoring"
            />
          </label>
          <label>
            Token role
            <select value={role} onChange={(e) => setRole((e.currentTarget as HTMLSelectElement).value as Role)}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
          <label>
            Expires (optional)
            <input
              type="datetime-local"
              value={expires}
              onInput={(e) => setExpires((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
        </div>
        <ErrorBox error={error} title="Token not created" />
        <div class="actions">
          <button type="submit" class="primary">
            Create API token
          </button>
        </div>
      </form>
      {created ? (
        <Secret
          label={`Secret of the API token ${created.name}`}
          value={created.token}
          note="Copy it now: it is not shown again (the appliance keeps only its hash)."
        />
      ) : null}
    </Section>
  )
}
