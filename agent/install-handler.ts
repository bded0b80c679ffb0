import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { isPswError } from '../shared/errors.ts'
import type { AssignedBundleT, AssignmentWindows } from '../shared/metadata/assignment-schema.ts'
import type { BundleContext } from './bundle-context.ts'
import { boundLog, errorInfo, installFailure } from './bundle-state.ts'
import { installDecision } from './install-gate.ts'
import { checkSupported, filesInstall } from './install-support.ts'
import { readVerified } from './verified-reader.ts'

/**
 * An assigned bundle with action `install`: fetch and verify its manifest, download it from
 * peers and the appliance (seeding meanwhile), wait for the maintenance window, install it
 * with the installer its manifest names (health-checked; rolled back by itself when the check
 * fails), and record what happened for the next report.
 */
export function createInstallHandler(ctx: BundleContext) {
  return async (entry: AssignedBundleT, policy: AssignmentWindows): Promise<void> => {
    const assignmentVersion = ctx.assignmentVersion()
    const swarm = ctx.swarm()!
    const previous = await ctx.states.get(entry.bundleId)
    // An install that failed (or was rolled back after failing) under this very assignment
    // waits for a re-issued one (a retry).
    if (
      (previous?.state === 'failed' || previous?.state === 'rolled-back') &&
      previous.installFailedUnder !== undefined &&
      previous.installFailedUnder === assignmentVersion
    )
      return
    const partPath = join(ctx.downloadsDir, `${entry.bundleId}.part`)
    // Installed and seeding (or nothing left to seed from): nothing to do.
    if (
      previous?.state === 'installed' &&
      previous.action === undefined &&
      previous.manifestVersion === entry.manifestVersion &&
      (swarm.get(entry.bundleId) || !existsSync(partPath))
    )
      return
    // --download-only: downloaded and seeding already.
    if (
      ctx.downloadOnly &&
      previous?.state === 'downloaded' &&
      previous.manifestVersion === entry.manifestVersion &&
      swarm.get(entry.bundleId)?.complete
    )
      return
    const base = {
      bundleId: entry.bundleId,
      manifestVersion: entry.manifestVersion,
      transfer: previous?.transfer ?? { bytesFromAppliance: 0, bytesFromPeers: 0, bytesServed: 0 },
    }
    const manifest = await ctx.fetchManifest(entry, base)
    if (manifest === undefined) return
    try {
      checkSupported(manifest)
    } catch (err) {
      const refusal = errorInfo(err)
      ctx.refuse(refusal)
      ctx.log.warn({ bundleId: entry.bundleId, ...refusal }, 'manifest refused')
      await ctx.states.put({ ...base, state: 'failed', chunksHave: 0, chunksTotal: 0, error: refusal })
      return
    }
    const total = manifest.content.chunks.length
    // The same content under a newer manifest (refresh, re-ingest), or a crash between the
    // installer's journal and ours: the bytes are in place, nothing to download.
    const already = await ctx.installedAt(manifest)
    if (already === 'here') {
      // What the install reported (health, reboot, release) stays with it.
      const kept =
        previous?.state === 'installed'
          ? {
              ...(previous.health ? { health: previous.health } : {}),
              ...(previous.log !== undefined ? { log: previous.log } : {}),
              ...(previous.rebootRequired ? { rebootRequired: true, rebootBootId: previous.rebootBootId } : {}),
              ...(previous.released ? { released: true as const } : {}),
            }
          : {}
      await ctx.states.put({ ...base, ...kept, state: 'installed', chunksHave: total, chunksTotal: total })
      // The downloaded copy is still here: seed it to the site's other agents.
      if (existsSync(partPath) && !swarm.get(manifest.bundleId)) {
        const session = await swarm.session(manifest, partPath, base.transfer)
        if (!session.complete) await swarm.close(manifest.bundleId)
      }
      return
    }
    if (already === 'elsewhere') {
      const error = {
        code: 'PSW_ERR_CONFLICT',
        message: `bundle is installed under another target root than ${filesInstall(manifest).targetRoot}; roll it back first`,
      }
      await ctx.states.put({ ...base, state: 'failed', chunksHave: 0, chunksTotal: total, error })
      return
    }
    let installing = false
    try {
      // Downloaded and seeding already (waiting for a maintenance window): straight to the gate.
      const waiting =
        previous?.state === 'downloaded' &&
        previous.manifestVersion === entry.manifestVersion &&
        swarm.get(entry.bundleId)?.complete === true
      let downloadSeconds = waiting ? previous.downloadSeconds : undefined
      if (!waiting) {
        await ctx.states.put({ ...base, state: 'downloading', chunksHave: 0, chunksTotal: total })
        // Downloads from peers and the appliance at once, and seeds what it has meanwhile.
        const session = await swarm.session(manifest, partPath, base.transfer)
        let lastLogged = -1
        const result = await session.download(ctx.signal, (have) => {
          const tenth = Math.floor((10 * have) / total)
          if (tenth !== lastLogged) {
            lastLogged = tenth
            ctx.log.info({ bundleId: manifest.bundleId.slice(0, 12), have, total }, 'downloading')
          }
        })
        base.transfer = { ...session.counters }
        downloadSeconds = result.seconds
        await ctx.states.put({ ...base, state: 'downloaded', chunksHave: total, chunksTotal: total, downloadSeconds })
        ctx.log.info(
          { bundleId: manifest.bundleId.slice(0, 12), ...result, ...base.transfer, requests: session.outcomes },
          'download complete and verified',
        )
        await ctx.report()
      }
      // Download and seed only (benchmarks).
      if (ctx.downloadOnly) return
      // Download any time, install only while a maintenance window is open (signed into the
      // assignment; emergency bundles ignore it). Meanwhile the bundle stays 'downloaded' and
      // is seeded to the site's other agents.
      const gate = installDecision({
        windows: policy.windows,
        spreadSeconds: policy.spreadSeconds,
        emergency: entry.emergency === true,
        maxRunSeconds: manifest.install.maxRunSeconds,
        peerId: ctx.peerId,
        now: ctx.clock.now(),
      })
      if (!gate.install) {
        ctx.logWaiting(entry.bundleId, 'install', gate.reason, gate.nextAt)
        return
      }
      ctx.clearWaiting(entry.bundleId)
      if (gate.reason !== 'no-windows')
        ctx.log.info({ bundleId: manifest.bundleId.slice(0, 12), reason: gate.reason }, 'installing inside the window')
      const done = {
        ...base,
        chunksHave: total,
        chunksTotal: total,
        ...(downloadSeconds === undefined ? {} : { downloadSeconds }),
      }
      await ctx.states.put({ ...done, state: 'installing' })
      installing = true
      const targetRoot = manifest.install.type === 'files' ? ctx.targetFor(manifest) : undefined
      if (targetRoot !== undefined) await mkdir(targetRoot, { recursive: true })
      const outcome = await ctx.installs.install({
        manifest,
        openVerified: () => readVerified(partPath, manifest),
        ...(targetRoot === undefined ? {} : { targetRoot }),
      })
      // A reboot it needs is run at the end of the cycle, inside a window that allows it
      // (reboot.ts); until the device has rebooted the bundle reports rebootRequired.
      await ctx.states.put({
        ...done,
        state: 'installed',
        log: boundLog(outcome.log),
        ...(outcome.health ? { health: { ok: outcome.health.ok, log: boundLog(outcome.health.log) } } : {}),
        ...(outcome.rebootRequired ? { rebootRequired: true, rebootBootId: await ctx.bootId() } : {}),
      })
      // The downloaded copy stays while the bundle is assigned: other agents fetch it from here.
      ctx.log.info(
        {
          bundleId: manifest.bundleId.slice(0, 12),
          patch: manifest.patch.name,
          installer: outcome.installer,
          rebootRequired: outcome.rebootRequired,
          ...(outcome.health ? { health: outcome.health.log } : {}),
        },
        'bundle installed',
      )
    } catch (err) {
      if (ctx.signal.aborted) return
      const error = errorInfo(err)
      const details = isPswError(err) ? err.details : undefined
      ctx.log.error(
        { bundleId: manifest.bundleId.slice(0, 12), ...error, ...(details ? { details } : {}) },
        'bundle failed',
      )
      await ctx.states.put({
        ...base,
        ...(installing ? installFailure(err) : { state: 'failed' as const, error }),
        chunksHave: 0,
        chunksTotal: total,
        ...(installing && assignmentVersion !== undefined ? { installFailedUnder: assignmentVersion } : {}),
      })
      // A downloaded file that fails its checks while installing is discarded. A download
      // that fails keeps its verified chunks for the next attempt (bad bytes are never written).
      if (installing && isPswError(err) && (err.code === 'PSW_ERR_BUNDLE_HASH' || err.code === 'PSW_ERR_CHUNK_HASH')) {
        await swarm.close(manifest.bundleId)
        await rm(partPath, { force: true })
      } else if (!installing) {
        // Keeps its verified chunks on disk; the next cycle opens a fresh session.
        await swarm.close(manifest.bundleId)
      }
    }
  }
}
