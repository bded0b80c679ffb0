import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { type Static, Type } from '@sinclair/typebox'
import { StoreError } from '../shared/errors.ts'
import { PeerIdString } from '../shared/metadata/common-schema.ts'
import { compileChecker, parseJsonLimited } from '../shared/metadata/schema-check.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'

export interface AgentLayout {
  root: string
  config: string
  libp2pKey: string
  agentCert: string
  rootCert: string
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
    db: join(root, 'db'),
    downloads: join(root, 'downloads'),
    installer: join(root, 'installer'),
  }
}

export const AGENT_CONFIG_FORMAT = 'patchswarm.agent-config/1'

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
  },
  { additionalProperties: false },
)
export type AgentConfig = Static<typeof AgentConfigSchema>

const checker = compileChecker(AgentConfigSchema)

export async function readAgentConfig(dataDir: string): Promise<AgentConfig> {
  const path = agentLayout(dataDir).config
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new StoreError('PSW_ERR_DATA_DIR', `${dataDir} holds no enrolled agent (run 'patchswarm agent enroll')`, {
      cause: err,
    })
  }
  return checker.check(parseJsonLimited(text, 64 << 10, path), path)
}

export async function writeAgentConfig(dataDir: string, config: AgentConfig): Promise<void> {
  checker.check(config, 'agent config')
  await writeFileDurable(agentLayout(dataDir).config, `${JSON.stringify(config, null, 2)}\n`)
}
