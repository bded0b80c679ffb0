import { useState } from 'preact/hooks'
import { post } from '../../api.ts'
import { ErrorBox } from '../../components.tsx'
import { dateTime } from '../../format.ts'
import { Secret } from './secret.tsx'
import { Section } from './section.tsx'

export interface EnrollmentToken {
  token: string
  expiresAt: string
  rootFingerprint?: string
  webCaFingerprint256?: string | null
  httpsUrl?: string | null
  webUrls?: string[]
}

export function EnrollmentSection() {
  const [label, setLabel] = useState('')
  const [ttl, setTtl] = useState(24)
  const [error, setError] = useState<unknown>(undefined)
  const [token, setToken] = useState<EnrollmentToken | undefined>(undefined)
  const [url, setUrl] = useState('')
  const urls = token ? [...new Set([...(token.webUrls ?? []), ...(token.httpsUrl ? [token.httpsUrl] : [])])] : []
  if (urls.length === 0 && location.protocol === 'https:') urls.push(location.origin)
  const chosen = url && urls.includes(url) ? url : (urls[0] ?? location.origin)
  const command = token
    ? [
        'patchswarm agent enroll',
        `--appliance ${chosen}`,
        `--token ${token.token}`,
        ...(token.rootFingerprint ? [`--root-fingerprint ${token.rootFingerprint}`] : []),
        ...(token.webCaFingerprint256 ? [`--web-ca-fingerprint ${token.webCaFingerprint256}`] : []),
        '--data /var/lib/patchswarm-agent',
      ].join(' ')
    : ''
  return (
    <Section id="settings-enrollment" title="Enrollment tokens">
      <p class="muted">
        A one-time token enrolls one endpoint. The command pins the appliance's root certificate and web CA, so the
        agent trusts nothing else.
      </p>
      <form
        class="card stack"
        aria-labelledby="new-enroll-h"
        onSubmit={async (e) => {
          e.preventDefault()
          setError(undefined)
          setToken(undefined)
          try {
            setToken(
              await post<EnrollmentToken>('/api/v1/admin/tokens', {
                ttlHours: ttl,
                ...(label.trim() ? { label: label.trim() } : {}),
              }),
            )
          } catch (err) {
            setError(err)
          }
        }}
      >
        <h3 id="new-enroll-h">New enrollment token</h3>
        <div class="grid2">
          <label>
            Label (optional, e.g. the device)
            <input
              type="text"
              maxLength={100}
              value={label}
              onInput={(e) => setLabel((e.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <label>
            Valid for (hours, 1 to 720)
            <input
              type="number"
              min={1}
              max={720}
              step={1}
              required
              value={ttl}
              onInput={(e) => setTtl(Number((e.currentTarget as HTMLInputElement).value))}
            />
          </label>
        </div>
        <ErrorBox error={error} title="Token not created" />
        <div class="actions">
          <button type="submit" class="primary">
            Create enrollment token
          </button>
        </div>
      </form>
      {token ? (
        <div class="card stack">
          <p>
            Single use, expires {dateTime(token.expiresAt)}. Root certificate SHA-256{' '}
            <code class="wrap">{token.rootFingerprint ?? '—'}</code>; web CA SHA-256{' '}
            <code class="wrap">{token.webCaFingerprint256 ?? 'none (imported certificate)'}</code>.
          </p>
          {urls.length > 1 ? (
            <label>
              Appliance address the endpoint reaches
              <select value={chosen} onChange={(e) => setUrl((e.currentTarget as HTMLSelectElement).value)}>
                {urls.map((u) => (
                  <option key={u} value={u}>
                    {u}
                  </option>
                ))}
              </select>
            </label>
          ) : null}
          <Secret label="Enrollment token" value={token.token} note="Shown once." />
          <Secret
            label="Enroll command"
            value={command}
            note="Run it on the endpoint as root (choose another --data directory if you like)."
          />
        </div>
      ) : null}
    </Section>
  )
}
