import { join, resolve } from 'node:path'
import { type Static, Type } from '@sinclair/typebox'
import { PeerIdString } from '../shared/metadata/common-schema.ts'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import { readConfigFile, writeConfigFile } from '../shared/store/config-file.ts'

export interface AgentLayout {
  root: string
  config: string
  libp2pKey: string
  agentCert: string
  rootCert: string
  /** The appliance's web CA (HTTPS), pinned at enrollment by its fingerprint; absent = system trust. */
  webCa: string
  db: string
  downloads: string
  installer: string
}

export function agentLayout(dataDir: string): AgentLayout {
  const root = resolve(dataDir)
  return {
    root,
    config: join(root, 'agent.json'),
    libp2pKey: join(root, 'keys', 'libp2p.key'),
    agentCert: join(root, 'certs', 'agent.pem'),
    rootCert: join(root, 'certs', 'root.pem'),
    webCa: join(root, 'certs', 'web-ca.pem'),
    db: join(root, 'db'),
    downloads: join(root, 'downloads'),
    installer: join(root, 'installer'),
  }
}

export const AGENT_CONFIG_FORMAT = 'patchswarm.agent-config/1'
/** Most arguments a configured reboot command may have. */
export const MAX_REBOOT_ARGS = 32

export const AgentConfigSchema = Type.Object(
  {
    format: Type.Literal(AGENT_CONFIG_FORMAT),
    peerId: PeerIdString,
    hostname: Type.String({ minLength: 1, maxLength: 255 }),
    applianceUrl: Type.String({ minLength: 1, maxLength: 2048 }),
    appliancePeerId: PeerIdString,
    applianceAddrs: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 32 }),
    /** The manifest's targetRoot is placed under this directory ('/' on a real endpoint). */
    installRoot: Type.String({ minLength: 1, maxLength: 1024 }),
    /** Where this agent's libp2p node listens (peers will dial it in the swarm issue). */
    listen: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 16 }),
    pollSeconds: Type.Number({ minimum: 0.05, maximum: 86_400 }),
    /** Chunk requests kept in flight to the appliance; memory ≈ this × chunk size. */
    requestWindow: Type.Integer({ minimum: 1, maximum: 64 }),
    /** Download rate cap in bytes per second; 0 = unlimited. */
    downloadBytesPerSecond: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Upload rate cap for serving peers, bytes per second; 0 = unlimited. */
    uploadBytesPerSecond: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Chunks sent to peers at once (upload slots). Default 2. */
    uploadSlots: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    /** Peers kept per bundle. Default 30. */
    maxPeers: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
    /** Find peers on the LAN with mDNS. Default true. */
    mdns: Type.Optional(Type.Boolean()),
    /**
     * The command (argv, run without a shell) that reboots this device, e.g.
     * `["systemctl", "reboot"]`. Absent: the agent never reboots by itself; a reboot an install
     * needs is only reported. Present: it is run at the end of a sync cycle, inside a
     * maintenance window that allows reboots, once per pending reboot (agent/reboot.ts).
     */
    rebootCommand: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: MAX_REBOOT_ARGS }),
    ),
  },
  { additionalProperties: false },
)
export type AgentConfig = Static<typeof AgentConfigSchema>

const checker = compileChecker(AgentConfigSchema)

export function readAgentConfig(dataDir: string): Promise<AgentConfig> {
  return readConfigFile(
    agentLayout(dataDir).config,
    checker,
    `${dataDir} holds no enrolled agent (run 'patchswarm agent enroll')`,
  )
}

export function writeAgentConfig(dataDir: string, config: AgentConfig): Promise<void> {
  return writeConfigFile(agentLayout(dataDir).config, checker, config)
}
