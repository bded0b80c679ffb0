import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Appliance, createAppliance } from '../../appliance/appliance.ts'
import { initApplianceDataDir } from '../../appliance/core.ts'
import { systemClock } from '../../shared/clock.ts'
import { silentLogger } from '../../shared/log.ts'
import { ASSIGNMENT_TYPE, type Assignment } from '../../shared/metadata/assignment-schema.ts'
import { type Signer, signEnvelope } from '../../shared/metadata/envelope.ts'
import { createP2PNode, createPrivateKey } from '../../shared/p2p/p2p-node.ts'
import {
  createRootCa,
  generateSigningKey,
  issueApplianceCert,
  publicKeyFingerprint,
  toPrivateKey,
} from '../../shared/pki/index.ts'
import { CHUNK_PROTOCOL } from '../../shared/protocol/chunk-codec.ts'
import { CONTROL_PROTOCOL } from '../../shared/protocol/control-protocol.ts'
import { adminGet, runCli, tempDir, writeRandomFile } from './harness.ts'

/**
 * The appliance runs in this process so the test can plant hostile signed metadata in its
 * database, the way a replayed, stale or forged document would reach an agent. The agents
 * are real processes. Faults rows 2, 3, 4 and 9.
 */
describe('an agent refuses bad signed metadata; the appliance refuses strangers', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let appliance: Appliance
  let httpUrl: string
  let peer: string
  let agentDir: string
  let root: string
  let goodVersion: number
  let otherBundle: string

  const runAgent = () => runCli(['agent', 'start', '--data', agentDir, '--once'])

  const plant = async (assignment: Assignment, envelope?: unknown) => {
    await appliance.core.db.put(
      `assignment:${peer}`,
      envelope ?? signEnvelope(assignment, appliance.core.identity.signer),
    )
  }

  const refusedCode = async () => {
    const device = await appliance.core.devices.get(peer)
    return device?.report?.refused?.code
  }

  const hostileAssignment = (over: Partial<Assignment> = {}): Assignment => ({
    type: ASSIGNMENT_TYPE,
    specVersion: 1,
    version: goodVersion + 100,
    device: peer,
    created: new Date(Date.now() - 60_000).toISOString(),
    expires: new Date(Date.now() + 86_400_000).toISOString(),
    bundles: [{ bundleId: otherBundle, manifestVersion: 1, action: 'install' }],
    ...over,
  })

  beforeAll(async () => {
    dir = await tempDir('attacks')
    const dataDir = join(dir.path, 'appliance')
    await initApplianceDataDir(dataDir, { clock: systemClock })
    appliance = await createAppliance({
      dataDir,
      clock: systemClock,
      log: silentLogger(),
      overrides: { httpPort: 0, httpsHost: '127.0.0.1', httpsPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
    })
    httpUrl = (await appliance.start()).httpUrl
    const { token } = await appliance.core.enrollment.createToken()
    agentDir = join(dir.path, 'agent')
    root = join(dir.path, 'root')
    const enrolled = await runCli([
      'agent',
      'enroll',
      '--appliance',
      httpUrl,
      '--token',
      token,
      '--data',
      agentDir,
      '--install-root',
      root,
      '--listen',
      '/ip4/127.0.0.1/tcp/0',
      '--json',
    ])
    expect(enrolled.code, enrolled.stderr).toBe(0)
    peer = (JSON.parse(enrolled.stdout) as { peerId: string }).peerId
    const src = join(dir.path, 'a.bin')
    await writeRandomFile(src, 300_000)
    await appliance.core.ingest({ source: src, name: 'good', version: '1', targetRoot: '/opt/good' })
    const other = await appliance.core.ingest({ source: src, name: 'other', version: '1', targetRoot: '/opt/other' })
    otherBundle = other.record.bundleId
    goodVersion = (await appliance.core.assignments.assign('good@1', [peer])).devices[0]!.version
    const first = await runAgent()
    expect(first.code, first.stderr).toBe(0)
    expect(existsSync(join(root, 'opt', 'good', 'a.bin'))).toBe(true)
  })

  afterAll(async () => {
    await appliance?.stop()
    await dir?.cleanup()
  })

  it('refuses an unsigned assignment (row 2)', async () => {
    const a = hostileAssignment()
    await plant(a, { signed: a, signatures: [], certificates: [appliance.core.identity.signer.certificatePem] })
    expect((await runAgent()).code).toBe(0)
    expect(await refusedCode()).toBe('PSW_ERR_SIGNATURE_MISSING')
    expect(existsSync(join(root, 'opt', 'other'))).toBe(false)
  })

  it('refuses an assignment signed by a key the pinned root does not certify (row 2)', async () => {
    const now = Date.now()
    const rogueRoot = generateSigningKey()
    const rogueRootPem = createRootCa({
      commonName: 'patchswarm root CA (branch-office)',
      ...rogueRoot,
      validDays: 30,
      now,
    })
    const key = generateSigningKey()
    const cert = issueApplianceCert({
      root: { certPem: rogueRootPem, privateKeyPem: rogueRoot.privateKeyPem },
      publicKeyPem: key.publicKeyPem,
      commonName: 'patchswarm appliance (branch-office)',
      validDays: 30,
      now,
    })
    const rogue: Signer = {
      keyId: publicKeyFingerprint(key.publicKeyPem),
      certificatePem: cert,
      privateKey: toPrivateKey(key.privateKeyPem),
    }
    await plant(hostileAssignment(), signEnvelope(hostileAssignment(), rogue))
    expect((await runAgent()).code).toBe(0)
    expect(await refusedCode()).toBe('PSW_ERR_UNKNOWN_KEY')
    expect(existsSync(join(root, 'opt', 'other'))).toBe(false)
  })

  it('refuses a tampered assignment whose signature no longer verifies (row 2)', async () => {
    const env = signEnvelope(hostileAssignment({ bundles: [] }), appliance.core.identity.signer)
    await plant(hostileAssignment(), { ...env, signed: hostileAssignment() })
    expect((await runAgent()).code).toBe(0)
    expect(await refusedCode()).toBe('PSW_ERR_SIGNATURE_INVALID')
  })

  it('refuses an expired assignment (row 4, freeze attack)', async () => {
    await plant(
      hostileAssignment({
        created: new Date(Date.now() - 10 * 86_400_000).toISOString(),
        expires: new Date(Date.now() - 86_400_000).toISOString(),
      }),
    )
    expect((await runAgent()).code).toBe(0)
    expect(await refusedCode()).toBe('PSW_ERR_METADATA_EXPIRED')
    expect(existsSync(join(root, 'opt', 'other'))).toBe(false)
  })

  it('refuses an assignment older than one it has seen (row 3, rollback attack)', async () => {
    await plant(hostileAssignment({ version: goodVersion - 1 }))
    expect((await runAgent()).code).toBe(0)
    expect(await refusedCode()).toBe('PSW_ERR_METADATA_ROLLBACK')
    expect(existsSync(join(root, 'opt', 'other'))).toBe(false)
  })

  it('refuses a connection from a PeerId that is not enrolled before any protocol stream (row 9)', async () => {
    const stranger = await createP2PNode({
      privateKey: await createPrivateKey(),
      listen: ['/ip4/127.0.0.1/tcp/0'],
      isAllowed: () => true,
      log: silentLogger(),
    })
    await stranger.start()
    try {
      const info = appliance.core.config
      expect(info).toBeDefined()
      const status = (await (
        await adminGet({ dataDir: join(dir.path, 'appliance'), info: { httpUrl } }, '/api/v1/status')
      ).json()) as {
        peerId: string
        multiaddrs: string[]
      }
      for (const protocol of [CHUNK_PROTOCOL, CONTROL_PROTOCOL]) {
        await expect(
          stranger.openStream(status.peerId, status.multiaddrs, protocol, AbortSignal.timeout(10_000)),
        ).rejects.toThrow()
      }
      expect(appliance.bytesServed().has(stranger.peerId)).toBe(false)
    } finally {
      await stranger.stop()
    }
  })
})
