import {
  createRootCa,
  generateSigningKey,
  issueApplianceCert,
  publicKeyFingerprint,
  toPrivateKey,
} from '../pki/index.ts'
import type { Signer } from './envelope.ts'

/** A root and an appliance signer for tests (real keys and certificates). */
export function makeTestSigner(now = Date.now(), validDays = 30): { rootPem: string; signer: Signer } {
  const root = generateSigningKey()
  const rootPem = createRootCa({ commonName: 'test root', ...root, validDays, now })
  const key = generateSigningKey()
  const certificatePem = issueApplianceCert({
    root: { certPem: rootPem, privateKeyPem: root.privateKeyPem },
    publicKeyPem: key.publicKeyPem,
    commonName: 'test appliance',
    validDays,
    now,
  })
  return {
    rootPem,
    signer: {
      keyId: publicKeyFingerprint(key.publicKeyPem),
      certificatePem,
      privateKey: toPrivateKey(key.privateKeyPem),
    },
  }
}
