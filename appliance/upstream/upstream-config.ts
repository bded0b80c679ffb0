import { type Static, Type } from '@sinclair/typebox'
import { Classification, Severity } from '../../shared/metadata/manifest-schema.ts'
import { AptFeedConfigSchema } from './apt-feed.ts'
import { FolderFeedConfigSchema } from './folder-feed.ts'
import { VendorFeedConfigSchema } from './vendor-feed.ts'
import { WanDownloaderSettingsSchema } from './wan-downloader-settings.ts'
import { WanScheduleSchema } from './wan-schedule.ts'

export const FeedConfigSchema = Type.Union([VendorFeedConfigSchema, AptFeedConfigSchema, FolderFeedConfigSchema])
export type FeedConfig = Static<typeof FeedConfigSchema>

/** The appliance configuration's `upstream` section (docs/operations.md). */
export const UpstreamConfigSchema = Type.Object(
  {
    feeds: Type.Array(FeedConfigSchema, { maxItems: 64 }),
    /** How often every feed is listed again. */
    syncIntervalMinutes: Type.Integer({ minimum: 1, maximum: 7 * 24 * 60 }),
    wan: Type.Object(
      {
        /** The WAN rate cap over the week, in a time zone (0 = unlimited). */
        schedule: WanScheduleSchema,
        /** Downloader tunables (timeouts, retries, minimum rate, concurrency). */
        downloader: Type.Optional(Type.Partial(WanDownloaderSettingsSchema)),
      },
      { additionalProperties: false },
    ),
    cache: Type.Object(
      {
        /**
         * Disk the content store may use for bundles, in bytes (0 = no quota). Bundles no
         * assignment needs are evicted least recently used first to make room.
         */
        quotaBytes: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
      },
      { additionalProperties: false },
    ),
    /**
     * Artifacts fetched as soon as a feed lists them, without an operator asking: those of
     * these severities or classifications, and emergencies when `emergency` is true. Default:
     * emergencies only — the WAN is the scarce resource.
     */
    autoDownload: Type.Object(
      {
        severities: Type.Array(Severity, { maxItems: 5, uniqueItems: true }),
        classifications: Type.Array(Classification, { maxItems: 8, uniqueItems: true }),
        emergency: Type.Boolean(),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
)
export type UpstreamConfig = Static<typeof UpstreamConfigSchema>

/** No feeds, hourly sync, no WAN cap, a 20 GiB cache, emergencies fetched automatically. */
export function defaultUpstreamConfig(): UpstreamConfig {
  return {
    feeds: [],
    syncIntervalMinutes: 60,
    wan: { schedule: { timeZone: 'UTC', defaultBytesPerSecond: 0, rules: [] } },
    cache: { quotaBytes: 20 * 1024 ** 3 },
    autoDownload: { severities: [], classifications: [], emergency: true },
  }
}
