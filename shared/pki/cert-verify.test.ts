import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  X509Certificate,
} from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { issueAgentCert } from './cert-builder.ts'
import { fingerprint, verifyAgentCert, verifyChain } from './cert-verify.ts'
import { generateSigningKey, subjectKeyIdentifier } from './keys.ts'
import { encodePem } from './pem.ts'
import {
  type Credentials,
  codeOf,
  DAY,
  editDer,
  forgeRsaE3Signature,
  NOW,
  newAgent,
  newAppliance,
  newRoot,
  nonCanonicalSignature,
  withSignature,
} from './test-fixtures.ts'
import { subjectNameDer } from './x509-fields.ts'
import { type ExtensionsSpec, ed25519Signer, type Signer, writeCertificate } from './x509-writer.ts'

/** Issues whatever the test asks for, bypassing cert-builder's policy. */
function rawIssue(issuer: Credentials, cn: string, extensions: ExtensionsSpec, signer?: Signer): Credentials {
  const keys = generateSigningKey()
  const issuerCert = new X509Certificate(issuer.certPem)
  const certPem = writeCertificate({
    subjectCommonName: cn,
    issuerNameDer: subjectNameDer(issuerCert.raw),
    publicKey: createPublicKey(keys.publicKeyPem),
    notBefore: new Date(NOW - DAY),
    notAfter: new Date(NOW + 30 * DAY),
    extensions: { authorityKeyId: subjectKeyIdentifier(issuerCert.publicKey), ...extensions },
    signer: signer ?? ed25519Signer(createPrivateKey(issuer.privateKeyPem)),
  })
  return { ...keys, certPem }
}

const LEAF: ExtensionsSpec = { basicConstraints: { ca: false }, keyUsage: { digitalSignature: true } }
const CA: ExtensionsSpec = { basicConstraints: { ca: true }, keyUsage: { keyCertSign: true } }

describe('verifyChain', () => {
  it('accepts root → appliance and root → intermediate → leaf', () => {
    const root = newRoot()
    expect(verifyChain({ leafPem: newAppliance(root).certPem, rootPem: root.certPem, now: NOW }).keyId).toMatch(
      /^[0-9a-f]{64}$/,
    )
    const inter = rawIssue(root, 'Intermediate', CA)
    const leaf = rawIssue(inter, 'Leaf', LEAF)
    const ok = verifyChain({
      leafPem: leaf.certPem,
      intermediatesPem: [inter.certPem],
      rootPem: root.certPem,
      now: NOW,
    })
    expect(ok.leaf.subject).toBe('CN=Leaf')
  })

  it('PSW_ERR_CERT_EXPIRED: before notBefore and after notAfter (injected now)', () => {
    const root = newRoot()
    const appliance = newAppliance(root, NOW, 30)
    const at = (now: number) => codeOf(() => verifyChain({ leafPem: appliance.certPem, rootPem: root.certPem, now }))
    expect(at(NOW + 29 * DAY)).toBeUndefined()
    expect(at(NOW + 31 * DAY)).toBe('PSW_ERR_CERT_EXPIRED')
    expect(at(NOW - DAY)).toBe('PSW_ERR_CERT_EXPIRED')
    expect(at(NOW + 3651 * DAY)).toBe('PSW_ERR_CERT_EXPIRED') // root expired too
  })

  it('PSW_ERR_CERT_CHAIN: a certificate issued by another root with the same name', () => {
    const root = newRoot('Site Root')
    const impostor = newRoot('Site Root')
    const appliance = newAppliance(impostor)
    expect(codeOf(() => verifyChain({ leafPem: appliance.certPem, rootPem: root.certPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_CHAIN',
    )
  })

  // faults.md row 16
  it('PSW_ERR_CERT_NOT_CA: a leaf (CA:false) used as the issuer of another certificate', () => {
    const root = newRoot()
    const appliance = newAppliance(root)
    const forged = rawIssue(appliance, 'evil', LEAF)
    expect(new X509Certificate(forged.certPem).verify(new X509Certificate(appliance.certPem).publicKey)).toBe(true)
    const code = codeOf(() =>
      verifyChain({ leafPem: forged.certPem, intermediatesPem: [appliance.certPem], rootPem: root.certPem, now: NOW }),
    )
    expect(code).toBe('PSW_ERR_CERT_NOT_CA')
  })

  // faults.md row 16 (the forge CVE: basicConstraints absent was taken as "may issue")
  it('PSW_ERR_CERT_NOT_CA: an issuer without basicConstraints at all, even with keyCertSign', () => {
    const root = newRoot()
    const noBc = rawIssue(root, 'no-bc', { keyUsage: { keyCertSign: true, digitalSignature: true } })
    const leaf = rawIssue(noBc, 'leaf', LEAF)
    const code = codeOf(() =>
      verifyChain({ leafPem: leaf.certPem, intermediatesPem: [noBc.certPem], rootPem: root.certPem, now: NOW }),
    )
    expect(code).toBe('PSW_ERR_CERT_NOT_CA')
  })

  it('PSW_ERR_CERT_CHAIN: more intermediates than the root pathLen 1 allows', () => {
    const root = newRoot()
    const a = rawIssue(root, 'A', CA)
    const b = rawIssue(a, 'B', CA)
    const leaf = rawIssue(b, 'leaf', LEAF)
    const code = codeOf(() =>
      verifyChain({ leafPem: leaf.certPem, intermediatesPem: [b.certPem, a.certPem], rootPem: root.certPem, now: NOW }),
    )
    expect(code).toBe('PSW_ERR_CERT_CHAIN')
  })

  // faults.md row 15
  it('PSW_ERR_CERT_CHAIN: a certificate with a non-canonical Ed25519 signature (S + L)', () => {
    const root = newRoot()
    const appliance = newAppliance(root)
    const malleated = withSignature(appliance.certPem, 'CERTIFICATE', nonCanonicalSignature)
    expect(new X509Certificate(malleated).verify(new X509Certificate(root.certPem).publicKey)).toBe(false)
    expect(codeOf(() => verifyChain({ leafPem: malleated, rootPem: root.certPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_CHAIN',
    )
  })

  // faults.md row 15
  it('rejects a Bleichenbacher-forged RSA e=3 signature (node:crypto), and RSA issuers by policy', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 })
    const rsaRoot = rsaSelfSigned(rsa.privateKey, rsa.publicKey)
    const modulus = BigInt('0x' + Buffer.from(rsa.publicKey.export({ format: 'jwk' }).n!, 'base64url').toString('hex'))
    let prefix: Buffer = Buffer.alloc(0)
    const forger: Signer = {
      algorithmIdentifierDer: SHA256_WITH_RSA,
      sign: (tbs) => {
        const forged = forgeRsaE3Signature(createHash('sha256').update(tbs).digest(), 256)
        prefix = forged.prefix
        // the forgery is real: s^3 (no reduction, s^3 < n) starts with the PKCS#1 prefix + DigestInfo
        const cube = BigInt('0x' + forged.signature.toString('hex')) ** 3n
        expect(cube < modulus).toBe(true)
        expect(Buffer.from(cube.toString(16).padStart(512, '0'), 'hex').subarray(0, prefix.length)).toEqual(prefix)
        return forged.signature
      },
    }
    const forged = rawIssue(rsaRoot, 'forged', LEAF, forger)
    expect(prefix.length).toBeGreaterThan(0)
    const rootX = new X509Certificate(rsaRoot.certPem)
    expect(new X509Certificate(forged.certPem).verify(rootX.publicKey)).toBe(false)
    // control: the same root's genuine signature verifies
    const genuine = rawIssue(rsaRoot, 'genuine', LEAF, {
      algorithmIdentifierDer: SHA256_WITH_RSA,
      sign: (d) => sign('sha256', d, rsa.privateKey),
    })
    expect(new X509Certificate(genuine.certPem).verify(rootX.publicKey)).toBe(true)
    // and verifyChain refuses any non-Ed25519 key in the chain
    for (const leafPem of [forged.certPem, genuine.certPem]) {
      expect(codeOf(() => verifyChain({ leafPem, rootPem: rsaRoot.certPem, now: NOW }))).toBe('PSW_ERR_KEY_INVALID')
    }
  })

  it('PSW_ERR_CERT_USAGE: a CA certificate as a signing leaf, or a leaf without digitalSignature', () => {
    const root = newRoot()
    expect(codeOf(() => verifyChain({ leafPem: root.certPem, rootPem: root.certPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_USAGE',
    )
    expect(verifyChain({ leafPem: root.certPem, rootPem: root.certPem, now: NOW, purpose: 'any' }).leaf.ca).toBe(true)
    const noUsage = rawIssue(root, 'no-usage', { basicConstraints: { ca: false } })
    expect(codeOf(() => verifyChain({ leafPem: noUsage.certPem, rootPem: root.certPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_USAGE',
    )
  })

  it('PSW_ERR_CERT_NOT_CA: a pinned "root" that is not a CA', () => {
    const root = newRoot()
    const appliance = newAppliance(root)
    expect(codeOf(() => verifyChain({ leafPem: appliance.certPem, rootPem: appliance.certPem, now: NOW }))).toBe(
      'PSW_ERR_CERT_NOT_CA',
    )
  })

  it('PSW_ERR_CERT_INVALID / PSW_ERR_TOO_LARGE: malformed, trailing bytes, oversized, too many intermediates', () => {
    const root = newRoot()
    const leafPem = newAppliance(root).certPem
    const check = (pem: string) => codeOf(() => verifyChain({ leafPem: pem, rootPem: root.certPem, now: NOW }))
    expect(check('garbage')).toBe('PSW_ERR_CERT_INVALID')
    expect(check(encodePem('CERTIFICATE', Buffer.from('3003020101', 'hex')))).toBe('PSW_ERR_CERT_INVALID')
    expect(check(editDer(leafPem, 'CERTIFICATE', (d) => Buffer.concat([d, Buffer.from([0, 0])])))).toBe(
      'PSW_ERR_CERT_INVALID',
    )
    expect(check(leafPem + root.certPem)).toBe('PSW_ERR_CERT_INVALID')
    expect(check(leafPem + ' '.repeat(20_000))).toBe('PSW_ERR_TOO_LARGE')
    const many = Array.from({ length: 5 }, () => root.certPem)
    expect(codeOf(() => verifyChain({ leafPem, intermediatesPem: many, rootPem: root.certPem, now: NOW }))).toBe(
      'PSW_ERR_TOO_LARGE',
    )
  })

  it('fingerprint() refuses what is not a certificate', () => {
    expect(codeOf(() => fingerprint('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'))).toBe(
      'PSW_ERR_CERT_INVALID',
    )
  })
})

describe('verifyAgentCert', () => {
  it('PSW_ERR_CERT_PEER_MISMATCH: another PeerId, or a root-signed certificate that is not the peer', async () => {
    const root = newRoot()
    const agent = await newAgent()
    const other = await newAgent()
    const certPem = issueAgentCert({
      issuer: root,
      publicKey: agent.publicKey,
      peerId: agent.peerId,
      validDays: 30,
      now: NOW,
    })
    const check = (pem: string, peerId: string) =>
      codeOf(() => verifyAgentCert({ certPem: pem, rootPem: root.certPem, peerId, now: NOW }))
    expect(check(certPem, agent.peerId)).toBeUndefined()
    expect(check(certPem, other.peerId)).toBe('PSW_ERR_CERT_PEER_MISMATCH')
    expect(check(newAppliance(root).certPem, agent.peerId)).toBe('PSW_ERR_CERT_PEER_MISMATCH')
    // right CN and SAN, but the key is someone else's
    const wrongKey = rawIssue(root, agent.peerId, { ...LEAF, altNames: { uri: [`urn:libp2p:peer:${agent.peerId}`] } })
    expect(check(wrongKey.certPem, agent.peerId)).toBe('PSW_ERR_CERT_PEER_MISMATCH')
  })

  it('PSW_ERR_CERT_CHAIN before binding: an agent certificate from a foreign root', async () => {
    const root = newRoot()
    const agent = await newAgent()
    const certPem = issueAgentCert({
      issuer: newRoot(),
      publicKey: agent.publicKey,
      peerId: agent.peerId,
      validDays: 30,
      now: NOW,
    })
    expect(codeOf(() => verifyAgentCert({ certPem, rootPem: root.certPem, peerId: agent.peerId, now: NOW }))).toBe(
      'PSW_ERR_CERT_CHAIN',
    )
  })
})

const SHA256_WITH_RSA = Buffer.from('300d06092a864886f70d01010b0500', 'hex')

function rsaSelfSigned(privateKey: KeyObject, publicKey: KeyObject): Credentials {
  const certPem = writeCertificate({
    subjectCommonName: 'RSA e=3 Root',
    publicKey,
    notBefore: new Date(NOW - DAY),
    notAfter: new Date(NOW + 30 * DAY),
    extensions: { ...CA, authorityKeyId: subjectKeyIdentifier(publicKey) },
    signer: { algorithmIdentifierDer: SHA256_WITH_RSA, sign: (d) => sign('sha256', d, privateKey) },
  })
  return {
    certPem,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  }
}
