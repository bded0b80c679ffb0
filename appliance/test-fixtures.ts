/**
 * Test fixtures for the appliance tests: a real data directory (keys, root, LevelDB) in a temp
 * dir, driven by a ManualClock, and real libp2p agent identities with their CSRs. Not used by
 * library code.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ManualClock } from '../shared/clock.ts'
import { silentLogger } from '../shared/log.ts'
import { createCsr, libp2pPrivateKeyToKeyObject } from '../shared/pki/index.ts'
import type { BundleRecord } from './catalog.ts'
import type { ApplianceConfig } from './config.ts'
import { type ApplianceCore, initApplianceDataDir, openApplianceCore } from './core.ts'
import type { EnrollResponse } from './enrollment.ts'

export const HOUR = 3_600_000
export const DAY = 24 * HOUR

export interface TestAppliance {
  /** Temp directory holding `data/` (the appliance) and `src/` (ingest sources). */
  dir: string
  dataDir: string
  clock: ManualClock
  core: ApplianceCore
  /** Closes the core and opens the same data directory again (durability checks). */
  reopen(): Promise<ApplianceCore>
  /** Closes the core and removes the temp directory; safe to call twice. */
  cleanup(): Promise<void>
}

/** A freshly initialised appliance data directory with its core open. */
export async function openTestAppliance(config: Partial<ApplianceConfig> = {}): Promise<TestAppliance> {
  const dir = await mkdtemp(join(tmpdir(), 'psw-appliance-'))
  const dataDir = join(dir, 'data')
  const clock = new ManualClock()
  try {
    await initApplianceDataDir(dataDir, { clock, config })
    const t: TestAppliance = {
      dir,
      dataDir,
      clock,
      core: await openApplianceCore(dataDir, { clock, log: silentLogger() }),
      async reopen() {
        await t.core.close()
        t.core = await openApplianceCore(dataDir, { clock, log: silentLogger() })
        return t.core
      },
      async cleanup() {
        await t.core.close()
        await rm(dir, { recursive: true, force: true })
      },
    }
    return t
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

export interface TestAgent {
  peerId: string
  /** A CSR for `peerId`, signed by its own key (proof of possession). */
  csr: string
}

/** A real libp2p Ed25519 identity and its CSR, as `patchswarm agent enroll` makes them. */
export async function newTestAgent(): Promise<TestAgent> {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key).toString()
  return { peerId, csr: createCsr({ peerId, privateKey: libp2pPrivateKeyToKeyObject(key) }) }
}

/** Creates a token and enrolls a new agent under `hostname`. */
export async function enrollNewAgent(
  core: ApplianceCore,
  hostname: string,
): Promise<TestAgent & { response: EnrollResponse }> {
  const agent = await newTestAgent()
  const { token } = await core.enrollment.createToken()
  const response = await core.enrollment.enroll({ token, peerId: agent.peerId, csr: agent.csr, hostname })
  return { ...agent, response }
}

/** Writes a small source file under `<dir>/src/` and returns its path. */
export async function writeSource(dir: string, name: string, content: string | Buffer): Promise<string> {
  const srcDir = join(dir, 'src')
  await mkdir(srcDir, { recursive: true })
  const path = join(srcDir, name)
  await writeFile(path, content)
  return path
}

/** Ingests a small one-file bundle `name@version` and returns its catalog record. */
export async function ingestSmallBundle(t: TestAppliance, name: string, version: string): Promise<BundleRecord> {
  const source = await writeSource(t.dir, `${name}-${version}.txt`, `payload of ${name}@${version}\n`)
  const { record } = await t.core.ingest({ source, name, version, targetRoot: '/opt/test' })
  return record
}

/** The `code` of what `promise` rejects with (undefined when it resolves). */
export async function rejectionCode(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise
  } catch (err) {
    return (err as { code?: string }).code ?? `non-coded: ${String(err)}`
  }
  return undefined
}
