import type { ApiError } from '../../api.ts'
import { ago } from '../../format.ts'
import { CLASSIFICATIONS, type Feed, SEVERITY_NAMES } from './upstream-config.ts'
import { FieldError } from './upstream-field-error.tsx'

/** PEM blocks (public keys, armored OpenPGP keys) and base64 keys from a text area. */
export function splitKeys(text: string): string[] {
  const blocks = text.match(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g) ?? []
  let rest = text
  for (const b of blocks) rest = rest.replace(b, ' ')
  return [...blocks.map((b) => b.trim()), ...rest.split(/\s+/).filter((s) => s !== '')]
}
export const words = (text: string) => text.split(/[\s,]+/).filter((s) => s !== '')

export function newFeed(kind: Feed['kind'], n: number): Feed {
  const id = `${kind}-${n}`
  if (kind === 'patchswarm') return { id, kind, url: 'https://' }
  if (kind === 'folder') return { id, kind, path: '/media/usb' }
  return {
    id,
    kind,
    baseUrl: 'https://deb.debian.org/debian-security',
    suite: 'bookworm-security',
    components: ['main'],
    architectures: ['amd64'],
    keyring: [],
  }
}

export function FeedEditor({
  feed,
  index,
  error,
  last,
  onChange,
  onRemove,
}: {
  feed: Feed
  index: number
  error: ApiError | undefined
  last: { lastSyncAt?: string; lastError?: { message: string } } | undefined
  onChange: (f: Feed) => void
  onRemove: () => void
}) {
  const text = (e: Event) => (e.currentTarget as HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement).value
  const path = `feeds/${index}`
  const set = (patch: Record<string, unknown>) => {
    const next = { ...feed, ...patch } as Record<string, unknown>
    for (const [k, v] of Object.entries(next)) if (v === undefined) delete next[k]
    onChange(next as unknown as Feed)
  }
  const keysText = (keys: string[] | undefined) => (keys ?? []).join('\n\n')
  const name = `Feed ${index + 1} (${feed.kind})`
  return (
    <fieldset class="feed">
      <legend>{name}</legend>
      {last ? (
        <p class="muted">
          Last sync {ago(last.lastSyncAt)}
          {last.lastError ? <span class="error-inline"> — {last.lastError.message}</span> : null}
        </p>
      ) : null}
      <div class="grid2">
        <label>
          Feed id
          <input type="text" required value={feed.id} onInput={(e) => set({ id: text(e) })} />
          <FieldError error={error} path={`${path}/id`} />
        </label>
        {feed.kind === 'patchswarm' ? (
          <label>
            Feed URL
            <input type="url" required value={feed.url} onInput={(e) => set({ url: text(e) })} />
            <FieldError error={error} path={`${path}/url`} />
          </label>
        ) : null}
        {feed.kind === 'folder' ? (
          <label>
            Folder (absolute path holding feed.json)
            <input type="text" required value={feed.path} onInput={(e) => set({ path: text(e) })} />
            <FieldError error={error} path={`${path}/path`} />
          </label>
        ) : null}
        {feed.kind === 'apt' ? (
          <>
            <label>
              Repository URL
              <input type="url" required value={feed.baseUrl} onInput={(e) => set({ baseUrl: text(e) })} />
              <FieldError error={error} path={`${path}/baseUrl`} />
            </label>
            <label>
              Suite
              <input type="text" required value={feed.suite} onInput={(e) => set({ suite: text(e) })} />
              <FieldError error={error} path={`${path}/suite`} />
            </label>
            <label>
              Components (space-separated)
              <input
                type="text"
                required
                value={feed.components.join(' ')}
                onInput={(e) => set({ components: words(text(e)) })}
              />
              <FieldError error={error} path={`${path}/components`} />
            </label>
            <label>
              Packages to offer (space-separated; empty = all)
              <input
                type="text"
                value={(feed.packages ?? []).join(' ')}
                onInput={(e) => {
                  const p = words(text(e))
                  set({ packages: p.length > 0 ? p : undefined })
                }}
              />
              <FieldError error={error} path={`${path}/packages`} />
            </label>
            <label>
              Severity given to its packages
              <select value={feed.severity ?? ''} onChange={(e) => set({ severity: text(e) || undefined })}>
                <option value="">default (none)</option>
                {SEVERITY_NAMES.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
            <label>
              Classification given to its packages
              <select value={feed.classification ?? ''} onChange={(e) => set({ classification: text(e) || undefined })}>
                <option value="">default (other)</option>
                {CLASSIFICATIONS.map((s) => (
                  <option key={s} value={s}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
          </>
        ) : null}
      </div>
      {feed.kind === 'apt' ? (
        <>
          <fieldset class="days">
            <legend>Architectures</legend>
            {(['amd64', 'arm64', 'all'] as const).map((a) => (
              <label class="check" key={a}>
                <input
                  type="checkbox"
                  checked={feed.architectures.includes(a)}
                  onChange={(e) =>
                    set({
                      architectures: (['amd64', 'arm64', 'all'] as const).filter((x) =>
                        x === a ? (e.currentTarget as HTMLInputElement).checked : feed.architectures.includes(x),
                      ),
                    })
                  }
                />
                {a}
              </label>
            ))}
          </fieldset>
          <label class="check">
            <input
              type="checkbox"
              checked={feed.requireValidUntil ?? false}
              onChange={(e) => set({ requireValidUntil: (e.currentTarget as HTMLInputElement).checked || undefined })}
            />
            Require Valid-Until in the Release file
          </label>
          <FieldError error={error} path={`${path}/architectures`} />
          <label>
            Signing keys (ASCII-armored OpenPGP public keys)
            <textarea
              rows={4}
              required
              value={keysText(feed.keyring)}
              onChange={(e) => set({ keyring: splitKeys(text(e)) })}
            />
            <FieldError error={error} path={`${path}/keyring`} />
          </label>
        </>
      ) : (
        <label>
          Trusted Ed25519 keys (PEM or base64, one per line; empty = unsigned feed)
          <textarea
            rows={3}
            value={keysText(feed.publicKeys)}
            onChange={(e) => {
              const k = splitKeys(text(e))
              set({ publicKeys: k.length > 0 ? k : undefined })
            }}
          />
          <FieldError error={error} path={`${path}/publicKeys`} />
        </label>
      )}
      <FieldError error={error} path={path} feedId={feed.id} />
      <div class="actions">
        <button type="button" onClick={onRemove} aria-label={`Remove ${name}`}>
          Remove feed
        </button>
      </div>
    </fieldset>
  )
}
