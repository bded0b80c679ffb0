import type { Command } from 'commander'
import { createProgress } from '../../shared/cli/progress.ts'
import type { AdminClient } from '../admin-client.ts'
import type { ArtifactSummary } from '../http/upstream-routes.ts'

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}

const STATES = ['available', 'queued', 'downloading', 'ingesting', 'ready', 'failed', 'quarantined', 'evicted']

function bytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${n} B`
}

function line(a: ArtifactSummary): string {
  const err = a.error ? `  ${a.error.code}` : ''
  const gone = a.listed ? '' : '  (no longer listed)'
  return `  ${a.ref}  ${a.name}@${a.version}  ${a.severity}/${a.classification}  ${bytes(a.size)}  ${a.state}${a.emergency ? '  EMERGENCY' : ''}${err}${gone}`
}

/**
 * `patchswarm appliance upstream …`: feeds, WAN downloads and the cache. `admin` opens the
 * running appliance's API, or the data directory itself when no appliance runs on it.
 */
export function registerUpstreamCommands(
  appliance: Command,
  admin: (dataDir: string) => Promise<AdminClient>,
  dataOption: readonly [string, string, string],
): void {
  const upstream = appliance.command('upstream').description('vendor feeds, WAN downloads and the content cache')

  upstream
    .command('status')
    .description('feeds (last sync, errors), downloads in progress, cache use and the WAN cap')
    .option(...dataOption)
    .option('--json', 'print JSON')
    .action(async (o: { data: string; json?: boolean }) => {
      const client = await admin(o.data)
      try {
        const s = await client.upstream.status()
        if (o.json) return out(JSON.stringify(s))
        out(`feeds (${s.feeds.length}):`)
        for (const f of s.feeds) {
          const state =
            f.lastError && f.lastError.at === f.lastSyncAt ? `FAILED ${f.lastError.code}: ${f.lastError.message}` : 'ok'
          out(
            `  ${f.feedId} (${f.kind})  last sync ${f.lastSyncAt ?? 'never'}  ${state}  ${f.artifacts} artifacts, ${f.skipped.length} skipped`,
          )
        }
        out(
          `artifacts: ${
            Object.entries(s.counts)
              .map(([k, v]) => `${v} ${k}`)
              .join(', ') || 'none'
          }`,
        )
        for (const d of s.downloads) {
          const pct = d.size > 0 ? ((100 * d.bytes) / d.size).toFixed(1) : '0'
          out(
            `  ${d.state} ${d.feedId}/${d.key}  ${bytes(d.bytes)}/${bytes(d.size)} (${pct}%)  ${bytes(d.rateBytesPerSec)}/s  attempt ${d.attempt}${d.lastError ? `  last error ${d.lastError.code}` : ''}`,
          )
        }
        const c = s.cache
        out(
          `cache: ${bytes(c.usedBytes)} in ${c.bundles} bundles (${c.pinnedBundles} pinned by assignments), quota ${c.quotaBytes > 0 ? bytes(c.quotaBytes) : 'none'}`,
        )
        out(`WAN cap now: ${s.wanBytesPerSecond > 0 ? `${bytes(s.wanBytesPerSecond)}/s` : 'unlimited'}`)
      } finally {
        await client.close()
      }
    })

  upstream
    .command('list')
    .description('artifacts the feeds offer, newest first, and where each stands')
    .option(...dataOption)
    .option('--feed <id>', 'only this feed')
    .option('--state <state>', `only this state: ${STATES.join('|')}`)
    .option('--json', 'print JSON')
    .action(async (o: { data: string; feed?: string; state?: string; json?: boolean }) => {
      if (o.state !== undefined && !STATES.includes(o.state)) {
        const { ValidationError } = await import('../../shared/errors.ts')
        throw new ValidationError('PSW_ERR_USAGE', `--state must be one of ${STATES.join(', ')}`)
      }
      const client = await admin(o.data)
      try {
        const list = await client.upstream.list({
          ...(o.feed ? { feedId: o.feed } : {}),
          ...(o.state ? { state: o.state as never } : {}),
        })
        if (o.json) return out(JSON.stringify(list))
        out(`${list.length} artifact(s):`)
        for (const a of list) out(line(a))
      } finally {
        await client.close()
      }
    })

  upstream
    .command('sync')
    .description('list every feed (or one) now instead of waiting for the schedule')
    .option(...dataOption)
    .option('--feed <id>', 'only this feed')
    .option('--json', 'print JSON')
    .action(async (o: { data: string; feed?: string; json?: boolean }) => {
      const client = await admin(o.data)
      try {
        const reports = await client.upstream.sync(o.feed)
        if (o.json) return out(JSON.stringify(reports))
        if (reports.length === 0) out('no feeds are configured (see docs/operations.md)')
        for (const r of reports)
          out(
            r.ok
              ? `${r.feedId}: ${r.artifacts} artifacts (${r.added} new, ${r.skipped} skipped)`
              : `${r.feedId}: FAILED ${r.error?.code}: ${r.error?.message}`,
          )
        if (reports.some((r) => !r.ok)) process.exitCode = 1
      } finally {
        await client.close()
      }
    })

  upstream
    .command('fetch')
    .description('download an artifact once over the WAN, verify it and ingest it as a signed bundle')
    .argument('<ref>', 'artifact reference <feedId>/<key> (see `upstream list`)')
    .option(...dataOption)
    .option(
      '--no-wait',
      'return once the download is queued (with no appliance running, it resumes when the appliance starts)',
    )
    .option('--json', 'print JSON')
    .action(async (ref: string, o: { data: string; wait: boolean; json?: boolean }) => {
      const client = await admin(o.data)
      const progress = createProgress('fetch')
      try {
        let a = await client.upstream.request(ref)
        const done = (x: ArtifactSummary) =>
          ['ready', 'failed', 'quarantined', 'available', 'evicted'].includes(x.state)
        while (o.wait && !done(a)) {
          const s = await client.upstream.status()
          const d = s.downloads.find((x) => x.sha256 === a.sha256)
          if (d) progress.update(d.bytes, d.size, d.state)
          await new Promise((r) => setTimeout(r, 500))
          a = (await client.upstream.list({})).find((x) => x.ref === ref) ?? a
        }
        progress.stop()
        if (o.json) return out(JSON.stringify(a))
        out(line(a))
        if (a.bundleId)
          out(`  bundle ${a.bundleId}  (assign it: patchswarm appliance assign ${a.bundleId.slice(0, 16)} --all)`)
        if (a.error) out(`  ${a.error.code}: ${a.error.message}`)
        if (a.state === 'failed' || a.state === 'quarantined') process.exitCode = 1
      } finally {
        progress.stop()
        await client.close()
      }
    })
}
