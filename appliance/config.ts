import { isIP } from 'node:net'
import { type Static, Type } from '@sinclair/typebox'
import { ValidationError } from '../shared/errors.ts'
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
        /** The plain-HTTP listener: loopback only (127.0.0.0/8, ::1, localhost). */
        host: Type.String({ minLength: 1, maxLength: 255 }),
        port: Type.Integer({ minimum: 0, maximum: 65535 }),
        /** The HTTPS listener (absent = 0.0.0.0 and 8443). */
        httpsHost: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
        httpsPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
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

/** Defaults of the HTTPS listener when `http.httpsHost` / `http.httpsPort` are absent. */
export const DEFAULT_HTTPS_HOST = '0.0.0.0'
export const DEFAULT_HTTPS_PORT = 8443

/**
 * Embedded defaults: HTTPS on 0.0.0.0:8443, plain HTTP on 127.0.0.1:8080 (never anything but
 * loopback), libp2p on all interfaces at TCP 7070 (only enrolled PeerIds get past the gater).
 */
export function defaultApplianceConfig(): ApplianceConfig {
  return {
    format: CONFIG_FORMAT,
    siteName: 'branch-office',
    http: { host: '127.0.0.1', port: 8080, httpsHost: DEFAULT_HTTPS_HOST, httpsPort: DEFAULT_HTTPS_PORT },
    p2p: { listen: ['/ip4/0.0.0.0/tcp/7070'] },
    manifestTtlDays: 90,
    assignmentTtlDays: 30,
    tokenTtlHours: 24,
  }
}

const checker = compileChecker(ApplianceConfigSchema)

export async function readApplianceConfig(dataDir: string): Promise<ApplianceConfig> {
  const path = applianceLayout(dataDir).config
  const config = await readConfigFile(
    path,
    checker,
    `${dataDir} is not an initialised appliance data directory (run 'patchswarm appliance init')`,
  )
  assertLoopbackHttpHost(config.http.host, `${path}: http.host`)
  return config
}

export async function writeApplianceConfig(dataDir: string, config: ApplianceConfig): Promise<void> {
  const path = applianceLayout(dataDir).config
  assertLoopbackHttpHost(config.http.host, `${path}: http.host`)
  return writeConfigFile(path, checker, config)
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`: the only hosts plain HTTP may listen on. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '')
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h
  return isIP(v4) === 4 && v4.startsWith('127.')
}

/** Plain HTTP carries sessions and tokens in clear text: refused anywhere but loopback (PSW_ERR_SCHEMA). */
export function assertLoopbackHttpHost(host: string, what = 'http.host'): void {
  if (!isLoopbackHost(host)) {
    throw new ValidationError(
      'PSW_ERR_SCHEMA',
      `${what} is ${host}: plain HTTP listens on loopback only (127.0.0.1, ::1); the LAN uses HTTPS (http.httpsHost, http.httpsPort)`,
      { details: { host } },
    )
  }
}
