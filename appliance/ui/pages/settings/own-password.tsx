import { useState } from 'preact/hooks'
import { ApiError, post, session } from '../../api.ts'
import { ErrorBox } from '../../components.tsx'

export function OwnPassword() {
  const [current, setCurrent] = useState('')
  const [next, setNext] = useState('')
  const [again, setAgain] = useState('')
  const [error, setError] = useState<unknown>(undefined)
  const [done, setDone] = useState(false)
  if (session.value?.legacy) return null
  return (
    <form
      class="card stack"
      aria-labelledby="own-pw-h"
      onSubmit={async (e) => {
        e.preventDefault()
        setError(undefined)
        setDone(false)
        if (next !== again) {
          setError(new ApiError(0, 'UI', 'the new passwords differ'))
          return
        }
        try {
          await post('/api/v1/auth/password', { current, password: next })
          setCurrent('')
          setNext('')
          setAgain('')
          setDone(true)
        } catch (err) {
          setError(err)
        }
      }}
    >
      <h3 id="own-pw-h">Your password</h3>
      <div class="grid2">
        <label>
          Current password
          <input
            type="password"
            required
            autoComplete="current-password"
            value={current}
            onInput={(e) => setCurrent((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          New password
          <input
            type="password"
            required
            minLength={12}
            maxLength={256}
            autoComplete="new-password"
            value={next}
            onInput={(e) => setNext((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          New password again
          <input
            type="password"
            required
            autoComplete="new-password"
            value={again}
            onInput={(e) => setAgain((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
      </div>
      <ErrorBox error={error} title="Password not changed" />
      <div class="actions">
        <button type="submit">Change my password</button>
        <span role="status">{done ? 'Password changed; your other sessions were ended.' : ''}</span>
      </div>
    </form>
  )
}
