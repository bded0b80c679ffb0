import { type Static, Type } from '@sinclair/typebox'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import { readConfigFile, writeConfigFile } from '../shared/store/config-file.ts'
import { applianceLayout } from './data-dir.ts'
import { UpstreamConfigSchema } from './upstream/upstream-config.ts'

export const CONFIG_FORMAT = 'patchswarm.appliance-config/1'

export const ApplianceConfigSchema = Type.Object(
  {
    format: Type.Literal(CONFIG_FORMAT),
    siteName: Type.String({ minLength: 1, maxLength: 100 }),
    http: Type.Object(
      {
        host: Type.String({ minLength: 1, maxLength: 255 }),
        port: Type.Integer({ minimum: 0, maximum: 65535 }),
      },
      { additionalProperties: false },
    ),
    p2p: Type.Object(
      { listen: Type.Array(Type.String({ maxLength: 200 }), { minItems: 1, maxItems: 16 }) },
      { additionalProperties: false },
    ),
    /** Chunk size of new bundles; absent = picked per bundle from its size (autoChunkSize). */
    chunkSize: Type.Optional(Type.Integer({ minimum: 65536, maximum: 16 << 20 })),
    manifestTtlDays: Type.Integer({ minimum: 1, maximum: 3650 }),
    assignmentTtlDays: Type.Integer({ minimum: 1, maximum: 365 }),
    tokenTtlHours: Type.Integer({ minimum: 1, maximum: 24 * 30 }),
    /** The appliance's chunk upload cap in bytes per second (0 = unlimited). */
    uploadBytesPerSecond: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Chunks uploaded at once. */
    uploadSlots: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** Feeds, WAN cap and schedule, cache quota, auto-download rules (docs/operations.md). */
    upstream: Type.Optional(UpstreamConfigSchema),
  },
  { additionalProperties: false },
)

export type ApplianceConfig = Static<typeof ApplianceConfigSchema>

/**
 * Embedded defaults: HTTP on 127.0.0.1:8080 (plain HTTP stays on loopback until the HTTPS
 * issue), libp2p on all interfaces at TCP 7070 (only enrolled PeerIds get past the gater).
 */
export function defaultApplianceConfig(): ApplianceConfig {
  return {
    format: CONFIG_FORMAT,
    siteName: 'branch-office',
    http: { host: '127.0.0.1', port: 8080 },
    p2p: { listen: ['/ip4/0.0.0.0/tcp/7070'] },
    manifestTtlDays: 90,
    assignmentTtlDays: 30,
    tokenTtlHours: 24,
  }
}

const checker = compileChecker(ApplianceConfigSchema)

export function readApplianceConfig(dataDir: string): Promise<ApplianceConfig> {
  return readConfigFile(
    applianceLayout(dataDir).config,
    checker,
    `${dataDir} is not an initialised appliance data directory (run 'patchswarm appliance init')`,
  )
}

export function writeApplianceConfig(dataDir: string, config: ApplianceConfig): Promise<void> {
  return writeConfigFile(applianceLayout(dataDir).config, checker, config)
}
