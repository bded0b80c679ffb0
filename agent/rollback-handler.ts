import { hasCode, isPswError } from '../shared/errors.ts'
import type { AssignedBundleT, AssignmentWindows } from '../shared/metadata/assignment-schema.ts'
import type { BundleContext } from './bundle-context.ts'
import { type BundleState, boundLog, errorInfo, failureTexts } from './bundle-state.ts'
import { rollbackDecision } from './install-gate.ts'
import { checkSupported } from './install-support.ts'

/**
 * A site-wide rollback (assignment action `rollback`): undo this bundle's install here, if it
 * is installed, inside the maintenance windows like an install (emergency: at once). The
 * bundle is not downloaded for it, and no longer seeded. Where nothing is installed the
 * answer is `rolled-back` at once, with a detail saying there was nothing to undo. Whether it
 * is installed is the installer's journal's word, so a rollback cut short by kill -9 (which
 * the installers' recovery finishes at start) is never run twice.
 */
export function createRollbackHandler(ctx: BundleContext) {
  return async (entry: AssignedBundleT, policy: AssignmentWindows): Promise<void> => {
    const assignmentVersion = ctx.assignmentVersion()
    const previous = await ctx.states.get(entry.bundleId)
    // Answered already: undone (or nothing to undo), or failed under this very assignment.
    if (
      previous?.action === 'rollback' &&
      (previous.state === 'rolled-back' ||
        (previous.state === 'failed' &&
          previous.installFailedUnder !== undefined &&
          previous.installFailedUnder === assignmentVersion))
    )
      return
    await ctx.dropDownload(entry.bundleId)
    const base = {
      bundleId: entry.bundleId,
      manifestVersion: entry.manifestVersion,
      transfer: previous?.transfer ?? { bytesFromAppliance: 0, bytesFromPeers: 0, bytesServed: 0 },
      action: 'rollback' as const,
    }
    // The manifest names the installer (and whether it can roll back); its content is not needed.
    const manifest = await ctx.fetchManifest(entry, base)
    if (manifest === undefined) return
    const total = manifest.content.chunks.length
    const short = entry.bundleId.slice(0, 12)
    const failed = async (error: { code: string; message: string }, extra: Partial<BundleState> = {}) => {
      ctx.log.error({ bundleId: short, ...error }, 'rollback failed')
      await ctx.states.put({
        ...base,
        ...extra,
        state: 'failed',
        chunksHave: 0,
        chunksTotal: total,
        error,
        ...(assignmentVersion === undefined ? {} : { installFailedUnder: assignmentVersion }),
      })
    }
    let status: string | undefined
    try {
      checkSupported(manifest)
      status = await ctx.installs.status(manifest)
    } catch (err) {
      // An installer this agent lacks never installed anything here; a journal it cannot
      // read (corrupt) leaves nobody able to tell what to undo.
      if (!hasCode(err, 'PSW_ERR_INSTALLER_UNSUPPORTED')) {
        await failed({ code: 'PSW_ERR_ROLLBACK_FAILED', message: errorInfo(err).message })
        return
      }
    }
    const decision = rollbackDecision({
      installed: status === 'installed',
      rollbackType: manifest.rollback.type,
      windows: policy.windows,
      spreadSeconds: policy.spreadSeconds,
      emergency: entry.emergency === true,
      maxRunSeconds: manifest.install.maxRunSeconds,
      peerId: ctx.peerId,
      now: ctx.clock.now(),
    })
    switch (decision.act) {
      case 'nothing': {
        const detail = status === 'rolled-back' ? 'already rolled back here' : 'not installed here'
        ctx.log.info({ bundleId: short, installer: status ?? 'none' }, `${detail}; nothing to roll back`)
        await ctx.states.put({
          ...base,
          state: 'rolled-back',
          chunksHave: 0,
          chunksTotal: total,
          detail: `${detail}; nothing to roll back`,
        })
        return
      }
      case 'refuse':
        await failed({
          code: 'PSW_ERR_ROLLBACK_UNAVAILABLE',
          message: `${manifest.patch.name} ${manifest.patch.version} declares no rollback (${manifest.install.type} installer); it stays installed`,
        })
        return
      case 'wait': {
        ctx.logWaiting(entry.bundleId, 'rollback', decision.reason, decision.nextAt)
        const detail = 'installed; waiting for the maintenance window to roll back'
        if (previous?.action !== 'rollback' || previous.detail !== detail || previous.state !== 'installed') {
          const kept = previous?.state === 'installed' ? previous : undefined
          await ctx.states.put({
            ...(kept ?? { chunksHave: 0, chunksTotal: total }),
            ...base,
            state: 'installed',
            detail,
          })
        }
        return
      }
      case 'rollback': {
        ctx.clearWaiting(entry.bundleId)
        ctx.log.info(
          { bundleId: short, patch: manifest.patch.name, reason: decision.reason },
          'rolling back (site-wide)',
        )
        try {
          const result = await ctx.installs.rollback(manifest)
          await ctx.states.put({
            ...base,
            state: 'rolled-back',
            chunksHave: 0,
            chunksTotal: total,
            log: boundLog(result.log),
          })
          ctx.log.info({ bundleId: short, patch: manifest.patch.name }, 'bundle rolled back')
        } catch (err) {
          const details = isPswError(err) ? err.details : undefined
          // Refused (nothing changed) keeps its own code; anything else is a failed rollback.
          const error = hasCode(err, 'PSW_ERR_ROLLBACK_UNAVAILABLE')
            ? errorInfo(err)
            : { code: 'PSW_ERR_ROLLBACK_FAILED', message: errorInfo(err).message }
          await failed(error, failureTexts(details))
        }
        return
      }
    }
  }
}
