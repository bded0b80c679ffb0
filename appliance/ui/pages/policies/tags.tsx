import { useState } from 'preact/hooks'
import { api, can, type Device } from '../../api.ts'
import { ErrorBox, invalidAttrs, useAction } from '../../components.tsx'
import { is, useApi } from '../../data.ts'
import { listOf } from '../../field-errors.ts'
import { shortId } from '../../format.ts'
import { TIERS } from '../../policy-types.ts'
import { href } from '../../router.ts'

export function TagsSection() {
  const [q, setQ] = useState('')
  const res = useApi<{ total: number; devices: Device[] }>(
    `/api/v1/devices?limit=500${q ? `&q=${encodeURIComponent(q)}` : ''}`,
    is('device'),
  )
  const operate = can('operate')
  const list = res.data?.devices ?? []
  return (
    <section aria-labelledby="p-tags">
      <h2 id="p-tags" tabIndex={-1}>
        Device tags and tiers
      </h2>
      <p class="muted">Tags and the criticality tier decide group membership (and tags are groups of their own).</p>
      <form class="toolbar" onSubmit={(e) => e.preventDefault()}>
        <label>
          Filter devices
          <input
            type="search"
            placeholder="host name, PeerId or tag"
            onChange={(e) => setQ((e.currentTarget as HTMLInputElement).value.trim())}
          />
        </label>
        {res.data ? (
          <span class="muted" role="status">
            {res.data.total} device{res.data.total === 1 ? '' : 's'}
            {res.data.total > list.length ? `, first ${list.length} shown` : ''}
          </span>
        ) : null}
      </form>
      <ErrorBox error={res.error} title="Could not load the devices" />
      {res.data && list.length === 0 ? <p class="muted">No device.</p> : null}
      {list.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Tags and tier of each device</caption>
            <thead>
              <tr>
                <th scope="col">Device</th>
                <th scope="col">Tags</th>
                <th scope="col">Tier</th>
                {operate ? <th scope="col">Save</th> : null}
              </tr>
            </thead>
            <tbody>
              {list.map((d) =>
                operate ? (
                  <TagRow key={`${d.peerId}:${d.tags.join(',')}:${d.tier}`} device={d} />
                ) : (
                  <tr key={d.peerId}>
                    <th scope="row">
                      <a href={href('devices', d.peerId)}>{d.hostname}</a>
                    </th>
                    <td>{d.tags.join(', ') || '—'}</td>
                    <td>{d.tier}</td>
                  </tr>
                ),
              )}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  )
}

export function TagRow({ device }: { device: Device }) {
  const [tags, setTags] = useState(device.tags.join(', '))
  const [tier, setTier] = useState(device.tier)
  const { busy, error, run } = useAction()
  const [saved, setSaved] = useState(false)
  const base = `/api/v1/devices/${encodeURIComponent(device.peerId)}`
  const save = async (e: Event) => {
    e.preventDefault()
    setSaved(false)
    await run(async () => {
      const next = listOf(tags)
      if (next.join(',') !== device.tags.join(',')) await api('PUT', `${base}/tags`, { tags: next })
      if (tier !== device.tier) await api('PUT', `${base}/tier`, { tier })
      setSaved(true)
    })
  }
  const errId = `te-${device.peerId}`
  return (
    <tr>
      <th scope="row">
        <a href={href('devices', device.peerId)}>{device.hostname}</a>
        <div class="muted mono">{shortId(device.peerId, 20)}</div>
      </th>
      <td>
        <input
          aria-label={`Tags of ${device.hostname}`}
          value={tags}
          form={`tf-${device.peerId}`}
          onInput={(e) => setTags(e.currentTarget.value)}
          {...invalidAttrs(error ? 'x' : undefined, errId)}
        />
        {error ? (
          <div class="error-inline" id={errId} role="alert">
            {(error as Error).message}
          </div>
        ) : null}
      </td>
      <td>
        <select
          aria-label={`Tier of ${device.hostname}`}
          value={tier}
          form={`tf-${device.peerId}`}
          onChange={(e) => setTier(e.currentTarget.value)}
        >
          {TIERS.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
      </td>
      <td>
        <form id={`tf-${device.peerId}`} onSubmit={save}>
          <button type="submit" disabled={busy} aria-label={`Save tags and tier of ${device.hostname}`}>
            {busy ? 'Saving…' : 'Save'}
          </button>{' '}
          {saved ? (
            <span class="muted" role="status">
              Saved
            </span>
          ) : null}
        </form>
      </td>
    </tr>
  )
}
