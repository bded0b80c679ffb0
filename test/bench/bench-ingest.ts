/**
 * npm run bench:ingest -- [--size BYTES] [--json]
 *
 * Ingests a random artifact (default 1 GiB) raw into a real appliance data directory:
 * verify size + vendor SHA-256, chunk, hash every chunk, store the chunks durably, sign and
 * record the manifest (`core.ingestArtifact`). The baseline is a plain SHA-256 over the same
 * file, read with the same buffer size (the chunk size), measured before and after the ingest;
 * the faster of the two counts. Writing the artifact is not measured. The temp directory
 * (artifact and data directory) is under $TMPDIR: `TMPDIR=/dev/shm` takes the disk out.
 *
 * Last stdout line: { bytes, seconds, mb_per_s, sha256_mb_per_s, ratio, peak_rss_bytes }
 * (MB = 10^6 bytes; ratio = mb_per_s / sha256_mb_per_s; peak_rss_bytes = this process's
 * VmHWM from its start to the end of the second baseline, so it includes the TypeScript
 * runner and every module loaded: about 160 MiB before the ingest starts). Goals: ratio ≥ 0.6,
 * peak RSS ≤ 200 MB. Progress, a summary and, as context, the disk's own write + fsync speed
 * go to stderr.
 */
import { createHash } from 'node:crypto'
import { open, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { initApplianceDataDir, openApplianceCore } from '../../appliance/core.ts'
import { artifactChunkSize } from '../../appliance/ingest-artifact.ts'
import type { FeedArtifact } from '../../appliance/upstream/feed-types.ts'
import { systemClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { tempDir, writeRandomFile } from '../e2e/harness.ts'
import { diskWriteFsync } from './disk-speed.ts'

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: String(1024 ** 3) },
    json: { type: 'boolean', default: false },
  },
})
const size = Number(values.size)
if (!Number.isSafeInteger(size) || size <= 0) throw new Error(`--size must be a positive integer, got ${values.size}`)
const say = (s: string) => process.stderr.write(`${s}\n`)
const mb = (bytes: number, seconds: number) => bytes / 1e6 / seconds
const mib = (bytes: number) => `${(bytes / 1048576).toFixed(0)} MiB`

async function vmHwm(): Promise<number> {
  const m = /VmHWM:\s+(\d+) kB/.exec(await readFile('/proc/self/status', 'utf8').catch(() => ''))
  return m ? Number(m[1]) * 1024 : process.memoryUsage.rss()
}

/**
 * Plain SHA-256 over the file in `bufferSize` reads, reading the next piece while hashing
 * this one (as a read stream does), into two reused buffers so the baseline makes no garbage.
 */
async function sha256File(path: string, bufferSize: number): Promise<{ hex: string; mbPerS: number }> {
  const started = performance.now()
  const hash = createHash('sha256')
  const bufs = [Buffer.allocUnsafeSlow(bufferSize), Buffer.allocUnsafeSlow(bufferSize)]
  const fh = await open(path, 'r')
  try {
    let position = 0
    let turn = 0
    let reading = fh.read(bufs[0]!, 0, bufferSize, 0)
    for (;;) {
      const { bytesRead } = await reading
      if (bytesRead === 0) break
      const filled = bufs[turn]!
      position += bytesRead
      turn ^= 1
      reading = fh.read(bufs[turn]!, 0, bufferSize, position)
      hash.update(filled.subarray(0, bytesRead))
    }
  } finally {
    await fh.close()
  }
  return { hex: hash.digest('hex'), mbPerS: mb(size, (performance.now() - started) / 1000) }
}

const dir = await tempDir('bench-ingest')
try {
  const dataDir = join(dir.path, 'appliance')
  await initApplianceDataDir(dataDir, { clock: systemClock })
  const path = join(dir.path, 'artifact.bin')
  say(`writing a ${size}-byte random artifact`)
  await writeRandomFile(path, size)
  const core = await openApplianceCore(dataDir, { clock: systemClock, log: silentLogger() })
  try {
    const chunkSize = artifactChunkSize(size, core.config.chunkSize)
    say(`baseline before: SHA-256 of the file, ${chunkSize}-byte reads`)
    const before = await sha256File(path, chunkSize)
    say(`  ${before.mbPerS.toFixed(0)} MB/s`)
    const artifact: FeedArtifact = {
      feedId: 'bench',
      key: 'bench-1',
      source: { kind: 'file', path },
      size,
      sha256: before.hex,
      name: 'bench',
      version: '1',
      vendor: 'bench',
      product: 'bench',
      classification: 'other',
      severity: 'none',
      cves: [],
      supersedes: [],
      requires: [],
      os: 'any',
      arch: 'any',
      installer: { type: 'files', targetRoot: '/opt/bench' },
      rollback: { type: 'files-backup' },
      emergency: false,
    }

    const rssBefore = process.memoryUsage.rss()
    say(`ingesting raw, RSS before: ${mib(rssBefore)}`)
    let sampled = rssBefore
    const sampler = setInterval(() => {
      sampled = Math.max(sampled, process.memoryUsage.rss())
    }, 20)
    const started = performance.now()
    const { manifest, newChunks } = await core.ingestArtifact({ path, artifact })
    const seconds = (performance.now() - started) / 1000
    clearInterval(sampler)
    if (manifest.bundleId !== before.hex) throw new Error('bundle id differs from the artifact digest')
    say(
      `  ${mb(size, seconds).toFixed(0)} MB/s, ${newChunks} chunks stored, peak RSS sampled during it: ${mib(sampled)}`,
    )

    say('baseline after')
    const after = await sha256File(path, chunkSize)
    say(`  ${after.mbPerS.toFixed(0)} MB/s (the faster baseline counts)`)
    const baseline = Math.max(before.mbPerS, after.mbPerS)
    const peak = await vmHwm()
    say(`process peak RSS (VmHWM) so far: ${mib(peak)}`)
    say('context: the disk writing the same bytes with one fsync')
    say(`  ${(await diskWriteFsync(join(dir.path, 'disk-test.bin'), size)).toFixed(0)} MB/s`)

    const mbPerS = mb(size, seconds)
    const result = {
      bytes: size,
      seconds: Number(seconds.toFixed(3)),
      mb_per_s: Number(mbPerS.toFixed(1)),
      sha256_mb_per_s: Number(baseline.toFixed(1)),
      ratio: Number((mbPerS / baseline).toFixed(3)),
      peak_rss_bytes: peak,
    }
    if (!values.json) say(JSON.stringify(result, null, 2))
    process.stdout.write(`${JSON.stringify(result)}\n`)
  } finally {
    await core.close()
  }
} finally {
  await dir.cleanup()
}
