import type { BundleRecord } from '../catalog.ts'
import type { DeviceRecord } from '../devices.ts'
import type { BundleSwarmStats } from '../swarm.ts'

const esc = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`

export interface StatusView {
  siteName: string
  peerId: string
  multiaddrs: string[]
  rootFingerprint: string
  bundles: BundleRecord[]
  devices: DeviceRecord[]
  /** Per bundle: the tracker's view and the appliance's uploads (while it runs). */
  swarm?: BundleSwarmStats[]
}

/** The plain status page at `/` (the real UI is a later issue). Refreshes itself every 5 s. */
export function renderStatusPage(view: StatusView): string {
  const bundleRows = view.bundles
    .map(
      (b) =>
        `<tr><td>${esc(b.name)}</td><td>${esc(b.version)}</td><td>${mib(b.size)}</td><td>${b.chunks}</td><td><code>${esc(b.bundleId.slice(0, 16))}</code></td></tr>`,
    )
    .join('')
  const deviceRows = view.devices
    .map((d) => {
      const bundles = d.report?.bundles ?? []
      const states = bundles.map(
        (b) => `${esc(b.bundleId.slice(0, 8))}: ${esc(b.state)}${b.error ? ` (${esc(b.error.code)})` : ''}`,
      )
      const fromAppliance = bundles.reduce((s, b) => s + b.transfer.bytesFromAppliance, 0)
      const fromPeers = bundles.reduce((s, b) => s + b.transfer.bytesFromPeers, 0)
      return `<tr><td>${esc(d.hostname)}</td><td><code>${esc(d.peerId.slice(-12))}</code></td><td>${esc(d.lastSeen ?? 'never')}</td><td>${states.join('<br>') || '—'}</td><td>${mib(fromAppliance)} / ${mib(fromPeers)}</td></tr>`
    })
    .join('')
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>patchswarm — ${esc(view.siteName)}</title>
<style>body{font:15px/1.4 system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #bbb;padding:.3rem .6rem;text-align:left}th{background:#eee}code{font-size:13px}</style></head>
<body><h1>patchswarm appliance — ${esc(view.siteName)}</h1>
<p>PeerId <code>${esc(view.peerId)}</code><br>Listening on ${view.multiaddrs.map((a) => `<code>${esc(a)}</code>`).join(', ')}<br>
Root certificate SHA-256 <code>${esc(view.rootFingerprint)}</code></p>
<h2>Bundles (${view.bundles.length})</h2>
<table><tr><th>Name</th><th>Version</th><th>Size</th><th>Chunks</th><th>Id</th></tr>${bundleRows}</table>
<h2>Devices (${view.devices.length})</h2>
<table><tr><th>Host</th><th>PeerId</th><th>Last seen</th><th>Bundles</th><th>From appliance / peers</th></tr>${deviceRows}</table>
<p>Enroll an agent: <code>patchswarm appliance token</code>, then <code>patchswarm agent enroll --appliance URL --token TOKEN --data DIR</code>.</p>
</body></html>`
}
