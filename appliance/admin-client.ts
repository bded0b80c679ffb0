import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import type { Logger } from 'pino'
import type { Clock } from '../shared/clock.ts'
import { type ErrorCode, hasCode, isErrorCode, ProtocolError, PswError, StoreError } from '../shared/errors.ts'
import type { RunInfo } from './appliance.ts'
import type { AssignResult } from './assignments.ts'
import type { BundleRecord } from './catalog.ts'
import { applianceLayout, readAdminToken } from './data-dir.ts'
import type { DeviceRecord } from './devices.ts'
import { type AdminUpstream, type ArtifactSummary, summarize } from './http/upstream-routes.ts'
import type { IngestProgress, IngestRequest } from './ingest.ts'
import type { BundleSwarmStats } from './swarm.ts'

/** What the CLI can ask of an appliance, whether it is running or not. */
export interface AdminClient {
  createToken(options: { ttlHours?: number; label?: string }): Promise<{ token: string; expiresAt: string }>
  ingest(request: IngestRequest, onProgress: IngestProgress): Promise<{ record: BundleRecord; newChunks: number }>
  assign(bundle: string, devices: string[] | 'all'): Promise<AssignResult>
  status(): Promise<{
    bundles: BundleRecord[]
    devices: Omit<DeviceRecord, 'certificatePem'>[]
    rootFingerprint: string
    httpUrl: string
    swarm?: BundleSwarmStats[]
  }>
  /**
   * Feeds, WAN downloads and the cache. Against a data directory no appliance runs on, the
   * CLI runs the upstream service itself while the command lasts (a USB import works
   * without starting the appliance); what close() interrupts resumes when the appliance starts.
   */
  upstream: AdminUpstream
  close(): Promise<void>
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Opens the data directory directly when no appliance runs on it; otherwise talks to the
 * running appliance's admin API (LevelDB allows one process per database).
 */
export async function openAdminClient(dataDir: string, deps: { clock: Clock; log: Logger }): Promise<AdminClient> {
  const layout = applianceLayout(dataDir)
  if (existsSync(layout.runInfo)) {
    const info = JSON.parse(await readFile(layout.runInfo, 'utf8')) as RunInfo
    if (processAlive(info.pid)) return remoteAdmin(info, await readAdminToken(layout))
  }
  try {
    const { openApplianceCore } = await import('./core.ts')
    const core = await openApplianceCore(dataDir, deps)
    const { createUpstream } = await import('./upstream/upstream-factory.ts')
    const upstream = createUpstream(core, deps)
    let started: Promise<void> | undefined
    const running = () => {
      started ??= upstream.start()
      return started
    }
    // Whoever can open the data directory directly is the local operator.
    const actor = { type: 'operator', id: 'local-cli' } as const
    return {
      createToken: async (o) => {
        const token = await core.enrollment.createToken(o)
        await core.audit.append({
          actor,
          action: 'enrollment.token.create',
          target: { type: 'enrollment-token', id: o.label ?? 'unlabelled' },
          after: { expiresAt: token.expiresAt, label: o.label },
        })
        return token
      },
      ingest: async (req, onProgress) => {
        const r = await core.ingest(req, { onProgress })
        await core.audit.append({
          actor,
          action: 'bundle.ingest',
          target: { type: 'bundle', id: r.record.bundleId },
          after: r.record,
        })
        await core.approvals.evaluate(r.record.bundleId)
        return { record: r.record, newChunks: r.newChunks }
      },
      assign: async (b, d) => {
        const result = await core.assignments.assign(b, d)
        await core.audit.append({
          actor,
          action: 'bundle.assign',
          target: { type: 'bundle', id: result.bundleId },
          after: { devices: result.devices.map((x) => ({ peerId: x.peerId, assignmentVersion: x.version })) },
        })
        return result
      },
      status: async () => ({
        bundles: await core.catalog.list(),
        devices: (await core.devices.list()).map(({ certificatePem: _c, ...d }) => d),
        rootFingerprint: core.identity.rootFingerprint,
        // Not running: the URL it will have, from its config.
        httpUrl: `http://${core.config.http.host === '0.0.0.0' ? '127.0.0.1' : core.config.http.host}:${core.config.http.port}`,
      }),
      upstream: {
        status: async () => ({
          ...(await upstream.service.status()),
          cache: await upstream.cache.usage(),
          wanBytesPerSecond: upstream.limiter.rate,
        }),
        list: async (filter) => (await upstream.catalog.list(filter)).map(summarize),
        sync: (feedId) => upstream.service.syncNow(feedId),
        request: async (ref) => {
          await running()
          return summarize(await upstream.service.request(ref, 'operator (cli)'))
        },
      },
      close: async () => {
        if (started) await upstream.stop()
        await core.close()
      },
    }
  } catch (err) {
    if (hasCode(err, 'PSW_ERR_STORE_LOCKED')) {
      throw new StoreError(
        'PSW_ERR_STORE_LOCKED',
        `an appliance is using ${layout.root} but left no run.json; stop it first`,
        {
          cause: err,
        },
      )
    }
    throw err
  }
}

function remoteAdmin(info: RunInfo, token: string): AdminClient {
  const call = async (method: string, path: string, body?: unknown): Promise<Response> => {
    let res: Response
    try {
      res = await fetch(new URL(path, info.httpUrl), {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
    } catch (err) {
      throw new ProtocolError('PSW_ERR_APPLIANCE_UNREACHABLE', `cannot reach the appliance at ${info.httpUrl}`, {
        cause: err,
      })
    }
    if (!res.ok) throw await toError(res)
    return res
  }
  return {
    createToken: async (o) => (await call('POST', '/api/v1/admin/tokens', o)).json() as never,
    assign: async (bundle, devices) =>
      (await call('POST', '/api/v1/admin/assign', { bundle, devices })).json() as never,
    status: async () =>
      ({ ...((await (await call('GET', '/api/v1/status')).json()) as object), httpUrl: info.httpUrl }) as never,
    async ingest(req, onProgress) {
      const res = await call('POST', '/api/v1/admin/ingest', req)
      let buffered = ''
      const decoder = new TextDecoder()
      for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(piece, { stream: true })
        let nl = buffered.indexOf('\n')
        while (nl >= 0) {
          const line = JSON.parse(buffered.slice(0, nl)) as
            | { type: 'progress'; phase: 'pack' | 'store'; done: number; total: number }
            | { type: 'result'; record: BundleRecord; newChunks: number }
            | { type: 'error'; error: { code: string; message: string } }
          buffered = buffered.slice(nl + 1)
          if (line.type === 'progress') onProgress(line.phase, line.done, line.total)
          else if (line.type === 'result') return { record: line.record, newChunks: line.newChunks }
          else throw new PswError(knownCode(line.error.code), line.error.message)
          nl = buffered.indexOf('\n')
        }
      }
      throw new ProtocolError('PSW_ERR_PROTOCOL', 'ingest response ended without a result')
    },
    upstream: {
      status: async () => (await call('GET', '/api/v1/upstream')).json() as never,
      list: async (filter) => {
        const q = new URLSearchParams({ limit: '10000' })
        if (filter.feedId) q.set('feed', filter.feedId)
        if (filter.state) q.set('state', filter.state)
        const body = (await (await call('GET', `/api/v1/upstream/artifacts?${q}`)).json()) as {
          artifacts: ArtifactSummary[]
        }
        return body.artifacts
      },
      sync: async (feed) =>
        ((await (await call('POST', '/api/v1/upstream/sync', feed ? { feed } : {})).json()) as { reports: never })
          .reports,
      request: async (ref) => (await call('POST', '/api/v1/upstream/fetch', { ref })).json() as never,
    },
    close: async () => {},
  }
}

const knownCode = (code: string): ErrorCode => (isErrorCode(code) ? code : 'PSW_ERR_INTERNAL')

async function toError(res: Response): Promise<PswError> {
  const body = (await res.json().catch(() => ({}))) as { code?: string; message?: string }
  return new PswError(knownCode(body.code ?? ''), body.message ?? `HTTP ${res.status}`)
}
