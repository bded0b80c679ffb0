import { existsSync } from 'node:fs'
import { mkdir, readFile } from 'node:fs/promises'
import type { PrivateKey } from '@libp2p/interface'
import { StoreError } from '../shared/errors.ts'
import type { Signer } from '../shared/metadata/envelope.ts'
import { createPrivateKey, privateKeyFromBytes, privateKeyToBytes } from '../shared/p2p/p2p-node.ts'
import {
  createRootCa,
  fingerprint,
  generateSigningKey,
  issueApplianceCert,
  publicKeyFingerprint,
  toPrivateKey,
  verifyChain,
} from '../shared/pki/index.ts'
import { writeFileDurable } from '../shared/store/durable-file.ts'
import type { ApplianceLayout } from './data-dir.ts'

/**
 * The appliance's keys. A standalone site creates its own root CA at init; the MSP link of a
 * later issue replaces `certs/root.pem` (and drops the local root key) with the MSP's root —
 * nothing else refers to the root by anything but that file.
 */
export interface ApplianceIdentity {
  rootPem: string
  /** Present on a standalone site only. */
  rootKeyPem: string
  rootFingerprint: string
  signer: Signer
  libp2pKey: PrivateKey
}

const ROOT_VALID_DAYS = 3650
const APPLIANCE_CERT_VALID_DAYS = 825

export async function createApplianceIdentity(layout: ApplianceLayout, siteName: string, now: number): Promise<void> {
  await mkdir(layout.keysDir, { recursive: true, mode: 0o700 })
  await mkdir(layout.certsDir, { recursive: true })
  const root = generateSigningKey()
  const rootPem = createRootCa({
    commonName: `patchswarm root CA (${siteName})`,
    privateKeyPem: root.privateKeyPem,
    publicKeyPem: root.publicKeyPem,
    validDays: ROOT_VALID_DAYS,
    now,
  })
  const signing = generateSigningKey()
  const applianceCert = issueApplianceCert({
    root: { certPem: rootPem, privateKeyPem: root.privateKeyPem },
    publicKeyPem: signing.publicKeyPem,
    commonName: `patchswarm appliance (${siteName})`,
    validDays: APPLIANCE_CERT_VALID_DAYS,
    now,
  })
  const libp2pKey = await createPrivateKey()
  await writeFileDurable(layout.rootCaKey, root.privateKeyPem, { mode: 0o600 })
  await writeFileDurable(layout.signingKey, signing.privateKeyPem, { mode: 0o600 })
  await writeFileDurable(layout.libp2pKey, privateKeyToBytes(libp2pKey), { mode: 0o600 })
  await writeFileDurable(layout.rootCert, rootPem)
  await writeFileDurable(layout.applianceCert, applianceCert)
}

export function identityExists(layout: ApplianceLayout): boolean {
  return existsSync(layout.rootCert) && existsSync(layout.signingKey) && existsSync(layout.libp2pKey)
}

export async function loadApplianceIdentity(layout: ApplianceLayout, now: number): Promise<ApplianceIdentity> {
  try {
    const [rootPem, rootKeyPem, signingKeyPem, certificatePem, libp2pBytes] = await Promise.all([
      readFile(layout.rootCert, 'utf8'),
      readFile(layout.rootCaKey, 'utf8'),
      readFile(layout.signingKey, 'utf8'),
      readFile(layout.applianceCert, 'utf8'),
      readFile(layout.libp2pKey),
    ])
    // Refuse to run with a signing certificate the agents would refuse.
    const chain = verifyChain({ leafPem: certificatePem, rootPem, now })
    const privateKey = toPrivateKey(signingKeyPem)
    if (publicKeyFingerprint(privateKey) !== chain.keyId) {
      throw new StoreError('PSW_ERR_DATA_DIR', 'signing key does not match the appliance certificate')
    }
    return {
      rootPem,
      rootKeyPem,
      rootFingerprint: fingerprint(rootPem),
      signer: { keyId: chain.keyId, certificatePem, privateKey },
      libp2pKey: privateKeyFromBytes(libp2pBytes),
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new StoreError(
        'PSW_ERR_DATA_DIR',
        `appliance keys missing in ${layout.root} (run 'patchswarm appliance init')`,
        {
          cause: err,
        },
      )
    }
    throw err
  }
}
