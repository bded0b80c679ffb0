import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import { hostname as osHostname } from 'node:os'
import { dirname } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { type Static, Type } from '@sinclair/typebox'
import { EnrollmentError, isErrorCode, isPswError, ProtocolError, StateError } from '../shared/errors.ts'
import { applianceRequest, fetchPinnedWebCa } from '../shared/http/appliance-http.ts'
import { PeerIdString } from '../shared/metadata/common-schema.ts'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import { createPrivateKey, privateKeyFromBytes, privateKeyToBytes } from '../shared/p2p/p2p-node.ts'
import {
  createCsr,
  fingerprint,
  libp2pPrivateKeyToKeyObject,
  verifyAgentCert,
  verifyChain,
} from '../shared/pki/index.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'
import { AGENT_CONFIG_FORMAT, type AgentConfig, agentLayout, writeAgentConfig } from './data-dir.ts'

const EnrollResponseSchema = Type.Object({
  certificate: Type.String({ maxLength: 16_384 }),
  root: Type.String({ maxLength: 16_384 }),
  appliance: Type.Object({
    peerId: PeerIdString,
    multiaddrs: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 32 }),
    signerCertificate: Type.String({ maxLength: 16_384 }),
  }),
})
const responseChecker = compileChecker(EnrollResponseSchema)
export type EnrollResponseT = Static<typeof EnrollResponseSchema>

export interface EnrollOptions {
  applianceUrl: string
  token: string
  dataDir: string
  hostname?: string
  installRoot?: string
  listen?: string[]
  /** Find peers with mDNS (off for loopback-only tests). Default true. */
  mdns?: boolean
  /** The command that reboots this device (argv, no shell); absent = never reboot by itself. */
  rebootCommand?: string[]
  /** If given, the appliance's root must have this SHA-256 fingerprint (shown by `appliance token`). */
  rootFingerprint?: string
  /**
   * For an `https:` appliance URL: the SHA-256 fingerprint of the appliance's web CA (shown by
   * `appliance token`). The agent then trusts exactly that CA for its HTTPS calls. Absent: the
   * system's trust store (an imported certificate from a CA the endpoint trusts).
   */
  webCaFingerprint?: string
  now?: () => number
  signal?: AbortSignal
}

/**
 * Enrolls this endpoint: creates its libp2p identity, sends a CSR signed with it plus the
 * one-time token, checks the certificate it gets back with node:crypto (chains to the root,
 * bound to our PeerId) and pins the root.
 */
export async function enrollAgent(options: EnrollOptions): Promise<AgentConfig> {
  const layout = agentLayout(options.dataDir)
  if (existsSync(layout.config))
    throw new StateError('PSW_ERR_CONFLICT', `${layout.root} already holds an enrolled agent`)
  const now = options.now ?? Date.now
  // The identity is persisted before the appliance hears of it, so an enrollment the
  // appliance recorded can never leave us without the key it certified.
  await mkdir(dirname(layout.libp2pKey), { recursive: true, mode: 0o700 })
  await mkdir(dirname(layout.agentCert), { recursive: true })
  const key = existsSync(layout.libp2pKey)
    ? privateKeyFromBytes(await readFile(layout.libp2pKey))
    : await createPrivateKey()
  if (!existsSync(layout.libp2pKey)) await writeFileDurable(layout.libp2pKey, privateKeyToBytes(key), { mode: 0o600 })
  const peerId = peerIdFromPrivateKey(key).toString()
  const csr = createCsr({ peerId, privateKey: libp2pPrivateKeyToKeyObject(key) })
  const hostname = options.hostname ?? osHostname()
  const url = new URL('/api/v1/enroll', options.applianceUrl)
  const signal = options.signal ?? AbortSignal.timeout(30_000)
  const webCaPem =
    url.protocol === 'https:' && options.webCaFingerprint
      ? await fetchPinnedWebCa(options.applianceUrl, options.webCaFingerprint, signal)
      : undefined
  const res = await applianceRequest(url, {
    method: 'POST',
    body: { token: options.token, peerId, csr, hostname },
    ...(webCaPem ? { caPem: webCaPem } : {}),
    signal,
  })
  let body: unknown
  try {
    body = JSON.parse(res.text)
  } catch {
    throw new ProtocolError('PSW_ERR_PROTOCOL', `appliance answered HTTP ${res.status} with no JSON`)
  }
  if (res.status < 200 || res.status >= 300) {
    const e = body as { code?: string; message?: string }
    const code = isErrorCode(e.code) ? e.code : 'PSW_ERR_PROTOCOL'
    throw new EnrollmentError(code, e.message ?? `enrollment failed with HTTP ${res.status}`)
  }
  const reply = responseChecker.check(body, 'enrollment response')
  const rootFp = fingerprint(reply.root)
  if (options.rootFingerprint && rootFp !== options.rootFingerprint.toLowerCase().replaceAll(':', '')) {
    throw new EnrollmentError('PSW_ERR_ROOT_MISMATCH', `appliance root fingerprint ${rootFp} is not the expected one`)
  }
  try {
    verifyAgentCert({ certPem: reply.certificate, rootPem: reply.root, peerId, now: now() })
    verifyChain({ leafPem: reply.appliance.signerCertificate, rootPem: reply.root, now: now() })
  } catch (err) {
    if (isPswError(err)) throw err
    throw new EnrollmentError('PSW_ERR_CERT_INVALID', 'enrollment returned an invalid certificate', { cause: err })
  }
  await writeFileDurable(layout.agentCert, reply.certificate)
  await writeFileDurable(layout.rootCert, reply.root)
  if (webCaPem) await writeFileDurable(layout.webCa, webCaPem)
  const config: AgentConfig = {
    format: AGENT_CONFIG_FORMAT,
    peerId,
    hostname,
    applianceUrl: options.applianceUrl,
    appliancePeerId: reply.appliance.peerId,
    applianceAddrs: reply.appliance.multiaddrs,
    installRoot: options.installRoot ?? '/',
    listen: options.listen ?? ['/ip4/0.0.0.0/tcp/0'],
    pollSeconds: 30,
    requestWindow: 8,
    downloadBytesPerSecond: 0,
    mdns: options.mdns ?? true,
    ...(options.rebootCommand ? { rebootCommand: options.rebootCommand } : {}),
  }
  await writeAgentConfig(options.dataDir, config)
  return config
}
