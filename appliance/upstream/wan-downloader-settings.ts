import { type Static, Type } from '@sinclair/typebox'
import { compileChecker } from '../../shared/metadata/schema-check.ts'

/** Tunables of the WAN downloader, with limits (they can come from the configuration file). */
export const WanDownloaderSettingsSchema = Type.Object(
  {
    /** Artifact downloads over the WAN at once. */
    concurrency: Type.Integer({ minimum: 1, maximum: 16 }),
    /** Local-file imports (USB) at once; they never touch the WAN. */
    localConcurrency: Type.Integer({ minimum: 1, maximum: 16 }),
    /** Consecutive failed attempts before PSW_ERR_WAN_GAVE_UP. */
    maxAttempts: Type.Integer({ minimum: 1, maximum: 100 }),
    /** An attempt that added this many bytes resets the failure count (a long flaky download). */
    progressResetBytes: Type.Integer({ minimum: 1 }),
    backoffBaseMs: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
    backoffMaxMs: Type.Integer({ minimum: 1, maximum: 86_400_000 }),
    /** Deadline for the response headers (DNS, connect, TLS, server think time). */
    headerTimeoutMs: Type.Integer({ minimum: 1, maximum: 600_000 }),
    /** Longest silence in a body. */
    idleTimeoutMs: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
    /** Slow-retrieval floor over `minRateWindowMs` of network time; 0 disables. */
    minBytesPerSec: Type.Integer({ minimum: 0, maximum: 1_000_000_000 }),
    minRateWindowMs: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
    /** fsync + sidecar after this many new bytes or this much time. */
    checkpointBytes: Type.Integer({ minimum: 1 }),
    checkpointMs: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
    maxRedirects: Type.Integer({ minimum: 0, maximum: 20 }),
    userAgent: Type.String({ minLength: 1, maxLength: 200 }),
    /** Deadline for a whole feed document. */
    indexTotalTimeoutMs: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
    /** Byte-count updates reach `onProgress` at most this often per download (state changes always do). */
    progressIntervalMs: Type.Integer({ minimum: 0, maximum: 60_000 }),
  },
  { additionalProperties: false },
)
export type WanDownloaderSettings = Static<typeof WanDownloaderSettingsSchema>

export function defaultWanDownloaderSettings(): WanDownloaderSettings {
  return {
    concurrency: 2,
    localConcurrency: 2,
    maxAttempts: 5,
    progressResetBytes: 1 << 20,
    backoffBaseMs: 2_000,
    backoffMaxMs: 300_000,
    headerTimeoutMs: 30_000,
    idleTimeoutMs: 60_000,
    minBytesPerSec: 1024,
    minRateWindowMs: 60_000,
    checkpointBytes: 8 << 20,
    checkpointMs: 10_000,
    maxRedirects: 5,
    userAgent: 'patchswarm-appliance',
    indexTotalTimeoutMs: 300_000,
    progressIntervalMs: 250,
  }
}

const checker = compileChecker(WanDownloaderSettingsSchema, 'PSW_ERR_INVALID_ARGUMENT')

/** Defaults overlaid with `overrides`, validated (PSW_ERR_INVALID_ARGUMENT on a bad value). */
export function resolveWanDownloaderSettings(overrides: Partial<WanDownloaderSettings> = {}): WanDownloaderSettings {
  const merged: Record<string, unknown> = { ...defaultWanDownloaderSettings() }
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) merged[k] = v
  return checker.check(merged, 'WAN downloader settings')
}
