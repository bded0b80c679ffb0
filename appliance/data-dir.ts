import { readFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { StoreError } from '../shared/errors.ts'

/** Where everything of one appliance lives. One directory; nothing outside it. */
export interface ApplianceLayout {
  root: string
  config: string
  adminToken: string
  keysDir: string
  rootCaKey: string
  signingKey: string
  libp2pKey: string
  certsDir: string
  rootCert: string
  applianceCert: string
  db: string
  chunks: string
  tmp: string
  /** The WAN downloader's partial/, verified/ and quarantine/ folders. */
  upstream: string
  runInfo: string
  /** The web PKI (HTTPS listener): web CA and server certificate, see appliance/http/web-tls.ts. */
  web: {
    dir: string
    caCert: string
    caKey: string
    serverCert: string
    serverKey: string
    /** Present when the server certificate was imported by the operator (never replaced automatically). */
    imported: string
  }
}

/** Default data directory for `npm start` and the CLI: `./data/appliance` under the working directory. */
export function defaultApplianceDataDir(): string {
  return resolve(process.env.PATCHSWARM_APPLIANCE_DATA ?? join('data', 'appliance'))
}

export function applianceLayout(dataDir: string): ApplianceLayout {
  const root = resolve(dataDir)
  const keysDir = join(root, 'keys')
  const certsDir = join(root, 'certs')
  return {
    root,
    config: join(root, 'appliance.json'),
    adminToken: join(root, 'admin.token'),
    keysDir,
    rootCaKey: join(keysDir, 'root-ca.key.pem'),
    signingKey: join(keysDir, 'signing.key.pem'),
    libp2pKey: join(keysDir, 'libp2p.key'),
    certsDir,
    rootCert: join(certsDir, 'root.pem'),
    applianceCert: join(certsDir, 'appliance.pem'),
    db: join(root, 'db'),
    chunks: join(root, 'chunks'),
    tmp: join(root, 'tmp'),
    upstream: join(root, 'upstream'),
    runInfo: join(root, 'run.json'),
    web: {
      dir: join(root, 'web'),
      caCert: join(root, 'web', 'ca.pem'),
      caKey: join(root, 'web', 'ca.key'),
      serverCert: join(root, 'web', 'server.pem'),
      serverKey: join(root, 'web', 'server.key'),
      imported: join(root, 'web', 'imported'),
    },
  }
}

/** The admin API bearer token written at init (mode 0600): whoever can read it may administer. */
export async function readAdminToken(layout: ApplianceLayout): Promise<string> {
  try {
    return (await readFile(layout.adminToken, 'utf8')).trim()
  } catch (err) {
    throw new StoreError('PSW_ERR_DATA_DIR', `cannot read ${layout.adminToken}`, { cause: err })
  }
}
