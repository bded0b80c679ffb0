import { ApiError, AUTH, post } from '../api.ts'
import { signedIn } from '../auth-flow.ts'
import { ErrorBox, PageTitle, useAction } from '../components.tsx'
import { route } from '../router.ts'

const MIN_PASSWORD = 12

/** The first start: the setup link's token creates the first admin. */
export function SetupPage() {
  const token = route.value.params.get('token') ?? ''
  const { busy, error, setError, run } = useAction()
  const submit = async (e: Event) => {
    e.preventDefault()
    const form = new FormData(e.currentTarget as HTMLFormElement)
    const password = String(form.get('password'))
    if (password !== String(form.get('confirm'))) {
      setError(new ApiError(400, 'UI_PASSWORDS_DIFFER', 'the two passwords differ'))
      return
    }
    await run(async () => {
      // Setup answers like a login: the session cookie is set.
      await post(AUTH.setup, { token: String(form.get('token')), username: String(form.get('username')), password })
      await signedIn()
    })
  }
  return (
    <main class="narrow card" id="main">
      <PageTitle>Set up this appliance</PageTitle>
      <p>
        Create the first administrator account. The setup link was printed when the appliance started; it works once and
        expires after 24 hours.
      </p>
      <form onSubmit={submit} class="stack">
        <label>
          Setup token
          <input name="token" required defaultValue={token} autocomplete="off" spellcheck={false} />
        </label>
        <label>
          User name <span class="muted">(lower case letters, digits, . _ -)</span>
          <input
            name="username"
            required
            autocomplete="username"
            maxLength={64}
            pattern="[a-z0-9][a-z0-9._\-]{0,63}"
            autocapitalize="none"
            spellcheck={false}
          />
        </label>
        <label>
          Password <span class="muted">(at least {MIN_PASSWORD} characters)</span>
          <input
            name="password"
            type="password"
            required
            minLength={MIN_PASSWORD}
            maxLength={256}
            autocomplete="new-password"
          />
        </label>
        <label>
          Password again
          <input
            name="confirm"
            type="password"
            required
            minLength={MIN_PASSWORD}
            maxLength={256}
            autocomplete="new-password"
          />
        </label>
        <ErrorBox error={error} title="Setup failed" />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create administrator'}
        </button>
      </form>
    </main>
  )
}

export function LoginPage() {
  const { busy, error, run } = useAction()
  const submit = async (e: Event) => {
    e.preventDefault()
    const form = new FormData(e.currentTarget as HTMLFormElement)
    await run(async () => {
      await post(AUTH.login, { username: String(form.get('username')), password: String(form.get('password')) })
      await signedIn(route.value.params.get('next') ?? undefined)
    })
  }
  return (
    <main class="narrow card" id="main">
      <PageTitle>Log in to patchswarm</PageTitle>
      <form onSubmit={submit} class="stack">
        <label>
          User name
          <input name="username" required autocomplete="username" />
        </label>
        <label>
          Password
          <input name="password" type="password" required autocomplete="current-password" />
        </label>
        <ErrorBox error={error} title="Login failed" />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </main>
  )
}
