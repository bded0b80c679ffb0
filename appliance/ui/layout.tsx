import type { ComponentChildren } from 'preact'
import { session } from './api.ts'
import { logout } from './auth-flow.ts'
import { liveConnected } from './live.ts'
import { route } from './router.ts'

const NAV = [
  ['dashboard', 'Dashboard'],
  ['devices', 'Devices'],
  ['patches', 'Patches'],
  ['policies', 'Policies'],
  ['windows', 'Windows'],
  ['rollouts', 'Rollouts'],
  ['swarm', 'Swarm'],
  ['audit', 'Audit'],
  ['reports', 'Reports'],
  ['settings', 'Settings'],
] as const

/** Header with the navigation and the account, then the page. */
export function Layout({ children }: { children: ComponentChildren }) {
  const current = route.value.path[0] ?? 'dashboard'
  const s = session.value
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="#/dashboard">
          patchswarm
        </a>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([id, label]) => (
              <li key={id}>
                <a href={`#/${id}`} aria-current={current === id ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div class="account">
          <span class={`live ${liveConnected.value ? 'on' : 'off'}`} role="status">
            {liveConnected.value ? 'Live' : 'Offline'}
          </span>
          {s ? (
            <span>
              {s.username} <span class="muted">({s.legacy ? 'read-only, no accounts yet' : s.role})</span>
            </span>
          ) : null}
          {s && !s.legacy ? (
            <button type="button" onClick={() => void logout()}>
              Log out
            </button>
          ) : null}
        </div>
      </header>
      {/* The skip link's target: focusable so the jump also moves keyboard focus. */}
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  )
}
