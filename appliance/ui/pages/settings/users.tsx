import { useState } from 'preact/hooks'
import { post, type Role, session } from '../../api.ts'
import { ActionButton, ConfirmButton, ErrorBox, Loading } from '../../components.tsx'
import { useApi } from '../../data.ts'
import { ago, dateTime } from '../../format.ts'
import { OwnPassword } from './own-password.tsx'
import { del, put } from './requests.ts'
import { Section } from './section.tsx'

export interface UserView {
  username: string
  role: Role
  disabled: boolean
  createdAt: string
  createdBy: string
  passwordChangedAt: string
  updatedAt?: string
}

export const ROLES: Role[] = ['viewer', 'operator', 'admin']

export function UsersSection() {
  const res = useApi<{ users: UserView[] }>('/api/v1/users', () => false)
  const me = session.value?.username
  const [form, setForm] = useState({ username: '', password: '', role: 'viewer' as Role })
  const [error, setError] = useState<unknown>(undefined)
  const [done, setDone] = useState<string | undefined>(undefined)
  const create = async (e: Event) => {
    e.preventDefault()
    setError(undefined)
    setDone(undefined)
    try {
      await post('/api/v1/users', form)
      setDone(`Created ${form.username} (${form.role}).`)
      setForm({ username: '', password: '', role: 'viewer' })
      res.reload()
    } catch (err) {
      setError(err)
    }
  }
  const change = async (username: string, body: Record<string, unknown>) => {
    await put(`/api/v1/users/${encodeURIComponent(username)}`, body)
    res.reload()
  }
  return (
    <Section id="settings-users" title="Users">
      <ErrorBox error={res.error} title="Could not load the accounts" />
      {res.loading && !res.data ? <Loading /> : null}
      {res.data ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Accounts</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Role</th>
                <th scope="col">State</th>
                <th scope="col">Created</th>
                <th scope="col">Password changed</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {res.data.users.map((u) => (
                <tr key={u.username}>
                  <th scope="row">
                    {u.username}
                    {u.username === me ? <span class="muted"> (you)</span> : null}
                  </th>
                  <td>
                    <RoleSelect user={u} onChange={(role) => change(u.username, { role })} />
                  </td>
                  <td>{u.disabled ? 'disabled' : 'active'}</td>
                  <td>
                    {dateTime(u.createdAt)} <span class="muted">by {u.createdBy}</span>
                  </td>
                  <td>{ago(u.passwordChangedAt)}</td>
                  <td>
                    <div class="decide">
                      <ActionButton
                        label={u.disabled ? `Enable ${u.username}` : `Disable ${u.username}`}
                        onClick={() => change(u.username, { disabled: !u.disabled })}
                      />
                      <ConfirmButton
                        label={`Reset password of ${u.username}`}
                        title={`New password for ${u.username}`}
                        message="The account's sessions end; tell the user the new password."
                        confirmLabel="Set password"
                        extra={
                          <label>
                            New password (12 to 256 characters)
                            <input
                              name="password"
                              type="password"
                              required
                              minLength={12}
                              maxLength={256}
                              autoComplete="new-password"
                            />
                          </label>
                        }
                        onConfirm={(f) => change(u.username, { password: String(f.get('password')) })}
                      />
                      <ConfirmButton
                        label={`Delete ${u.username}`}
                        title={`Delete the account ${u.username}?`}
                        message="The account and its sessions are removed. The audit log keeps what it did."
                        danger
                        disabled={u.username === me}
                        onConfirm={async () => {
                          await del(`/api/v1/users/${encodeURIComponent(u.username)}`)
                          res.reload()
                        }}
                      />
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
      <form class="card stack" onSubmit={create} aria-labelledby="new-user-h">
        <h3 id="new-user-h">New account</h3>
        <div class="grid2">
          <label>
            New user name
            <input
              type="text"
              required
              autoComplete="off"
              value={form.username}
              onInput={(e) => setForm({ ...form, username: (e.currentTarget as HTMLInputElement).value })}
            />
          </label>
          <label>
            Role
            <select
              value={form.role}
              onChange={(e) => setForm({ ...form, role: (e.currentTarget as HTMLSelectElement).value as Role })}
            >
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </label>
          <label>
            Initial password (12 to 256 characters)
            <input
              type="password"
              required
              minLength={12}
              maxLength={256}
              autoComplete="new-password"
              value={form.password}
              onInput={(e) => setForm({ ...form, password: (e.currentTarget as HTMLInputElement).value })}
            />
          </label>
        </div>
        <ErrorBox error={error} title="Account not created" />
        <div class="actions">
          <button type="submit" class="primary">
            Create account
          </button>
          <span role="status">{done ?? ''}</span>
        </div>
      </form>
      <OwnPassword />
    </Section>
  )
}

export function RoleSelect({ user, onChange }: { user: UserView; onChange: (role: Role) => Promise<void> }) {
  const [error, setError] = useState<unknown>(undefined)
  const [busy, setBusy] = useState(false)
  return (
    <>
      <select
        aria-label={`Role of ${user.username}`}
        value={user.role}
        disabled={busy}
        onChange={async (e) => {
          const el = e.currentTarget as HTMLSelectElement
          setBusy(true)
          setError(undefined)
          try {
            await onChange(el.value as Role)
          } catch (err) {
            el.value = user.role
            setError(err)
          } finally {
            setBusy(false)
          }
        }}
      >
        {ROLES.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
      <ErrorBox error={error} title="Role not changed" />
    </>
  )
}
