import { signal } from '@preact/signals'
import { ApiError, AUTH, get, post, type Session, session, setUnauthorizedHandler } from './api.ts'
import { startLive, stopLive } from './live.ts'
import { navigate, route } from './router.ts'

/** 'boot' until we know whether to set up, log in, or show the app. */
export const phase = signal<'boot' | 'ready' | 'failed'>('boot')
export const bootError = signal<unknown>(undefined)
export const setupRequired = signal(false)

const PUBLIC = new Set(['login', 'setup'])

function toLogin(): void {
  const current = route.value.path[0]
  const next = current && !PUBLIC.has(current) ? location.hash : undefined
  navigate(`#/login${next ? `?next=${encodeURIComponent(next)}` : ''}`, true)
}

/** The session ended (401 anywhere): back to the login page. */
export function sessionGone(): void {
  if (session.value?.legacy) return
  session.value = null
  stopLive()
  toLogin()
}

/** After login or setup: the session, the live stream, then where the user wanted to go. */
export async function signedIn(next?: string): Promise<void> {
  session.value = await get<Session>(AUTH.session)
  setupRequired.value = false
  startLive(checkSession)
  navigate(next?.startsWith('#/') && !/^#\/(login|setup)/.test(next) ? next : '#/dashboard', true)
}

/** The event stream was refused: is the session still there? */
async function checkSession(): Promise<void> {
  if (session.value?.legacy) return
  try {
    session.value = await get<Session>(AUTH.session)
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) sessionGone()
  }
}

export async function boot(): Promise<void> {
  setUnauthorizedHandler(sessionGone)
  try {
    let state: { setupRequired: boolean }
    try {
      state = await get<{ setupRequired: boolean }>(AUTH.state)
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err
      // An appliance without accounts: loopback may read, nobody writes from the browser.
      session.value = { username: 'local', role: 'viewer', csrfToken: '', legacy: true }
      startLive(checkSession)
      if (!route.value.path[0] || PUBLIC.has(route.value.path[0])) navigate('#/dashboard', true)
      phase.value = 'ready'
      return
    }
    setupRequired.value = state.setupRequired
    if (state.setupRequired) {
      if (route.value.path[0] !== 'setup') navigate('#/setup', true)
    } else {
      try {
        session.value = await get<Session>(AUTH.session)
        startLive(checkSession)
        if (!route.value.path[0] || PUBLIC.has(route.value.path[0])) navigate('#/dashboard', true)
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 401) throw err
        if (route.value.path[0] !== 'login') toLogin()
      }
    }
    phase.value = 'ready'
  } catch (err) {
    bootError.value = err
    phase.value = 'failed'
  }
}

/** Ends the session on the server, then shows the login page. */
export async function logout(): Promise<void> {
  try {
    await post(AUTH.logout)
  } finally {
    session.value = null
    stopLive()
    navigate('#/login', true)
  }
}
