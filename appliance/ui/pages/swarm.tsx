import { useRef } from 'preact/hooks'
import type { BundleReport, WanUsage } from '../api.ts'
import { ErrorBox, Loading, PageTitle, Progress } from '../components.tsx'
import { is, useApi } from '../data.ts'
import { bytes, shortId } from '../format.ts'

/**
 * The swarm, per bundle. Where the numbers come from:
 * - `GET /api/v1/status`: the catalog's bundles (size), each device's latest report (per
 *   bundle: chunks held, bytes received from the appliance and from peers, bytes served to
 *   peers; agents report about every 30 s) and the appliance's swarm stats per bundle
 *   (`swarm[]`: tracker members, members holding every chunk, bytes the appliance uploaded).
 * - `GET /api/v1/metrics/wan` (WAN bytes per upstream artifact sha256) joined with
 *   `GET /api/v1/upstream/artifacts` (artifact sha256 → bundle id): what each bundle cost
 *   over the WAN. A bundle ingested locally cost nothing there.
 * - Transfer rates: the difference between two successive refreshes of the status (refetched
 *   on `device`/`swarm` events and every 5 s) divided by the time between them, so a rate is
 *   as fresh as the agents' last reports.
 */

interface StatusBundle {
  bundleId: string
  name: string
  version: string
  size: number
  chunks: number
}
interface SwarmStats {
  bundleId: string
  applianceBytesServed: number
  members: number
  complete: number
}
interface Status {
  bundles: StatusBundle[]
  devices: Array<{ peerId: string; hostname: string; report?: { bundles: BundleReport[] } }>
  swarm?: SwarmStats[]
}
interface ArtifactRow {
  sha256?: string
  bundleId?: string
}

interface Row {
  bundle: StatusBundle
  holders: number
  downloading: number
  members: number
  seeding: number
  fromPeers: number
  fromAppliance: number
  served: number
  applianceServed: number
  wan: number | undefined
}

interface Sample {
  at: number
  totals: Map<string, { fromPeers: number; fromAppliance: number; applianceServed: number }>
}

const HOLDS = new Set(['downloaded', 'installing', 'installed'])

function rows(status: Status, wanBySha: Map<string, number>, artifacts: ArtifactRow[]): Row[] {
  const stats = new Map((status.swarm ?? []).map((s) => [s.bundleId, s]))
  const wanByBundle = new Map<string, number>()
  for (const a of artifacts)
    if (a.bundleId && a.sha256 && wanBySha.has(a.sha256))
      wanByBundle.set(a.bundleId, (wanByBundle.get(a.bundleId) ?? 0) + wanBySha.get(a.sha256)!)
  return status.bundles.map((bundle) => {
    const r: Row = {
      bundle,
      holders: 0,
      downloading: 0,
      members: stats.get(bundle.bundleId)?.members ?? 0,
      seeding: stats.get(bundle.bundleId)?.complete ?? 0,
      fromPeers: 0,
      fromAppliance: 0,
      served: 0,
      applianceServed: stats.get(bundle.bundleId)?.applianceBytesServed ?? 0,
      wan: wanByBundle.get(bundle.bundleId),
    }
    for (const d of status.devices)
      for (const b of d.report?.bundles ?? []) {
        if (b.bundleId !== bundle.bundleId) continue
        const complete = b.chunksTotal > 0 && b.chunksHave >= b.chunksTotal
        if (complete || HOLDS.has(b.state)) r.holders++
        else r.downloading++
        r.fromPeers += b.transfer.bytesFromPeers
        r.fromAppliance += b.transfer.bytesFromAppliance
        r.served += b.transfer.bytesServed
      }
    return r
  })
}

const rate = (bps: number | undefined) => (bps === undefined ? '—' : `${bytes(Math.round(bps))}/s`)

export function SwarmPage() {
  const status = useApi<Status>('/api/v1/status', is('device', 'swarm', 'patch'), { pollMs: 5000 })
  const wan = useApi<WanUsage & { artifacts?: Array<{ sha256: string; bytes: number }> }>(
    '/api/v1/metrics/wan',
    is('wan'),
  )
  const upstream = useApi<{ artifacts: ArtifactRow[] }>('/api/v1/upstream/artifacts?limit=10000', is('upstream'))
  // Two successive samples of the cumulative per-bundle counters give the rates.
  const samples = useRef<{ prev?: Sample; last?: Sample; data?: Status }>({})
  const list = status.data
    ? rows(
        status.data,
        new Map((wan.data?.artifacts ?? []).map((a) => [a.sha256, a.bytes])),
        upstream.data?.artifacts ?? [],
      )
    : []
  if (status.data && samples.current.data !== status.data) {
    samples.current.data = status.data
    samples.current.prev = samples.current.last
    samples.current.last = {
      at: Date.now(),
      totals: new Map(
        list.map((r) => [
          r.bundle.bundleId,
          { fromPeers: r.fromPeers, fromAppliance: r.fromAppliance, applianceServed: r.applianceServed },
        ]),
      ),
    }
  }
  const { prev, last } = samples.current
  const rateOf = (bundleId: string, key: 'fromPeers' | 'fromAppliance' | 'applianceServed') => {
    if (!prev || !last || last.at <= prev.at) return undefined
    const a = prev.totals.get(bundleId)?.[key]
    const b = last.totals.get(bundleId)?.[key]
    if (a === undefined || b === undefined) return undefined
    return Math.max(0, b - a) / ((last.at - prev.at) / 1000)
  }
  const total = list.reduce(
    (s, r) => ({
      delivered: s.delivered + r.fromPeers + r.fromAppliance,
      fromPeers: s.fromPeers + r.fromPeers,
      peersRate: s.peersRate + (rateOf(r.bundle.bundleId, 'fromPeers') ?? 0),
      applianceRate: s.applianceRate + (rateOf(r.bundle.bundleId, 'fromAppliance') ?? 0),
      uploadRate: s.uploadRate + (rateOf(r.bundle.bundleId, 'applianceServed') ?? 0),
    }),
    { delivered: 0, fromPeers: 0, peersRate: 0, applianceRate: 0, uploadRate: 0 },
  )
  return (
    <section>
      <PageTitle>Swarm</PageTitle>
      <p class="muted">
        Each patch crosses the WAN once; devices then fetch its chunks from the appliance and from each other. Rates are
        computed from successive agent reports.
      </p>
      <ErrorBox error={status.error} title="Could not load the swarm status" />
      {wan.error && wan.error.status !== 404 ? <ErrorBox error={wan.error} title="Could not load WAN usage" /> : null}
      {status.loading && !status.data ? <Loading /> : null}
      {status.data ? (
        <div class="tiles">
          <article class="tile" aria-labelledby="s-total">
            <h2 id="s-total">Delivered on the LAN</h2>
            <dl class="facts">
              <dt>Delivered to devices</dt>
              <dd data-testid="swarm-delivered">{bytes(total.delivered)}</dd>
              <dt>of which from peers</dt>
              <dd>{bytes(total.fromPeers)}</dd>
              <dt>Over the WAN</dt>
              <dd>{bytes(wan.data?.totalBytes)}</dd>
            </dl>
            <p class="muted" data-testid="swarm-story">
              {list.reduce((n, r) => n + r.holders, 0)} copies on devices of {list.length} bundle
              {list.length === 1 ? '' : 's'}, for {bytes(list.reduce((n, r) => n + (r.wan ?? 0), 0))} of WAN downloads.
            </p>
          </article>
          <article class="tile" aria-labelledby="s-rate">
            <h2 id="s-rate">Transfer rates now</h2>
            <dl class="facts">
              <dt>From peers</dt>
              <dd data-testid="rate-peers">{prev ? rate(total.peersRate) : 'measuring…'}</dd>
              <dt>From the appliance (agents’ reports)</dt>
              <dd>{prev ? rate(total.applianceRate) : 'measuring…'}</dd>
              <dt>Appliance uploading (its own count)</dt>
              <dd>{prev ? rate(total.uploadRate) : 'measuring…'}</dd>
            </dl>
          </article>
        </div>
      ) : null}
      {status.data && list.length === 0 ? <p class="muted">No bundle in the catalog yet.</p> : null}
      {list.length > 0 ? (
        <div class="table-wrap">
          <table>
            <caption class="sr-only">Swarm per bundle</caption>
            <thead>
              <tr>
                <th scope="col">Bundle</th>
                <th scope="col">Devices holding it</th>
                <th scope="col">Peers seeding</th>
                <th scope="col">Where devices got it</th>
                <th scope="col">WAN cost</th>
                <th scope="col">Rates</th>
              </tr>
            </thead>
            <tbody>
              {list.map((r) => {
                const delivered = r.fromPeers + r.fromAppliance
                const id = r.bundle.bundleId
                return (
                  <tr key={id}>
                    <th scope="row">
                      {r.bundle.name} {r.bundle.version}
                      <div class="muted mono">{shortId(id)}</div>
                      <div class="muted">
                        {bytes(r.bundle.size)}, {r.bundle.chunks} chunks
                      </div>
                    </th>
                    <td>
                      <strong>{r.holders}</strong>
                      {r.downloading ? <div class="muted">{r.downloading} downloading</div> : null}
                    </td>
                    <td>
                      {r.seeding} <span class="muted">of {r.members} in the swarm</span>
                    </td>
                    <td>
                      <Progress
                        value={r.fromPeers}
                        max={Math.max(delivered, 1)}
                        label={`${r.bundle.name}: ${bytes(r.fromPeers)} of ${bytes(delivered)} from peers`}
                      />
                      <span class="muted">
                        {bytes(r.fromPeers)} from peers, {bytes(r.fromAppliance)} from the appliance
                      </span>
                      <div class="muted">appliance uploaded {bytes(r.applianceServed)}</div>
                    </td>
                    <td>
                      {r.wan === undefined ? (
                        <span class="muted">none (ingested on site)</span>
                      ) : (
                        <>
                          {bytes(r.wan)}
                          {r.holders > 1 ? <div class="muted">{r.holders} devices for one download</div> : null}
                        </>
                      )}
                    </td>
                    <td>
                      <span class="muted">peers</span> {rate(rateOf(id, 'fromPeers'))}
                      <div>
                        <span class="muted">appliance</span> {rate(rateOf(id, 'fromAppliance'))}
                      </div>
                    </td>
                  </tr>
                )
              })}
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  )
}
