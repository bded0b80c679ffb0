import { signal } from '@preact/signals'

/** The page the hash names: `#/devices/<peerId>?x=1` → { path: ['devices', '<peerId>'], params }. */
export interface Route {
  path: string[]
  params: URLSearchParams
}

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#\/?/, '')
  const q = raw.indexOf('?')
  const pathPart = q < 0 ? raw : raw.slice(0, q)
  const path = pathPart
    .split('/')
    .filter((p) => p !== '')
    .map((p) => {
      try {
        return decodeURIComponent(p)
      } catch {
        return p
      }
    })
  return { path, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) }
}

export const route = signal<Route>(parseHash(location.hash))

window.addEventListener('hashchange', () => {
  route.value = parseHash(location.hash)
})

/** `#/a/b` for path segments (encoded). */
export function href(...segments: string[]): string {
  return `#/${segments.map(encodeURIComponent).join('/')}`
}

export function navigate(to: string, replace = false): void {
  if (replace) {
    history.replaceState(null, '', to)
    route.value = parseHash(location.hash)
  } else location.hash = to
}
