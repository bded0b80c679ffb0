import { createPublicKey, X509Certificate } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createRootCa, issueAgentCert, issueApplianceCert, NOT_BEFORE_BACKDATE_MS } from './cert-builder.ts'
import { certificateValidity, fingerprint, verifyAgentCert, verifyChain } from './cert-verify.ts'
import { createCsr } from './csr.ts'
import { generateSigningKey, publicKeyFingerprint, samePublicKey } from './keys.ts'
import { codeOf, DAY, NOW, newAgent, newAppliance, newRoot } from './test-fixtures.ts'
import { readBasicConstraints, readKeyUsage, readSubjectKeyId } from './x509-fields.ts'

describe('createRootCa', () => {
  it('creates a self-signed Ed25519 CA with pathLen 1 and keyCertSign + cRLSign', () => {
    const root = newRoot('Branch 42 Root')
    const x = new X509Certificate(root.certPem)
    expect(x.subject).toBe('CN=Branch 42 Root')
    expect(x.issuer).toBe(x.subject)
    expect(x.ca).toBe(true)
    expect(x.publicKey.asymmetricKeyType).toBe('ed25519')
    expect(x.verify(x.publicKey)).toBe(true)
    expect(x.checkIssued(x)).toBe(true)
    expect(readBasicConstraints(x.raw)).toEqual({ ca: true, pathLen: 1 })
    expect([...(readKeyUsage(x.raw) ?? [])].sort()).toEqual([5, 6])
    expect(readSubjectKeyId(x.raw)?.toString('hex')).toBe(publicKeyFingerprint(root.publicKeyPem).slice(0, 40))
    expect(x.serialNumber).toMatch(/^[0-9A-F]{32}$/)
    expect(Number.parseInt(x.serialNumber.slice(0, 2), 16)).toBeLessThan(0x80)
    const { notBefore, notAfter } = certificateValidity(x)
    expect(notBefore).toBe(NOW - NOT_BEFORE_BACKDATE_MS)
    expect(notAfter).toBe(NOW + 3650 * DAY)
  })

  it('gives the root fingerprint as SHA-256 hex of the DER (same as node fingerprint256)', () => {
    const root = newRoot()
    const fp = fingerprint(root.certPem)
    expect(fp).toMatch(/^[0-9a-f]{64}$/)
    expect(fp).toBe(new X509Certificate(root.certPem).fingerprint256.replaceAll(':', '').toLowerCase())
  })

  it('refuses a public key that does not match the private key, and bad arguments', () => {
    const a = generateSigningKey()
    const b = generateSigningKey()
    const base = { commonName: 'Root', validDays: 10, now: NOW }
    expect(codeOf(() => createRootCa({ ...base, privateKeyPem: a.privateKeyPem, publicKeyPem: b.publicKeyPem }))).toBe(
      'PSW_ERR_KEY_INVALID',
    )
    expect(codeOf(() => createRootCa({ ...base, privateKeyPem: a.privateKeyPem, validDays: 0 }))).toBe(
      'PSW_ERR_INVALID_ARGUMENT',
    )
    expect(codeOf(() => createRootCa({ ...base, privateKeyPem: a.privateKeyPem, commonName: 'x'.repeat(65) }))).toBe(
      'PSW_ERR_INVALID_ARGUMENT',
    )
  })

  it('is fast: well under 20 ms per certificate', () => {
    const keys = generateSigningKey()
    const started = performance.now()
    for (let i = 0; i < 50; i++) createRootCa({ commonName: 'Root', ...keys, validDays: 10, now: NOW })
    expect((performance.now() - started) / 50).toBeLessThan(20)
  })
})

describe('issueApplianceCert', () => {
  it('issues a CA:false signing certificate that verifies against the root', () => {
    const root = newRoot()
    const appliance = newAppliance(root)
    const x = new X509Certificate(appliance.certPem)
    expect(x.ca).toBe(false)
    expect(x.issuer).toBe('CN=Site Root')
    const keyId = publicKeyFingerprint(appliance.publicKeyPem)
    expect(x.subjectAltName).toBe(`DNS:appliance.branch.example, URI:urn:patchswarm:appliance:${keyId}`)
    const verified = verifyChain({ leafPem: appliance.certPem, rootPem: root.certPem, now: NOW + DAY })
    expect(verified.keyId).toBe(keyId)
    expect(samePublicKey(verified.publicKey, createPublicKey(appliance.publicKeyPem))).toBe(true)
  })

  it('never issues beyond the root: notAfter is clamped to the root notAfter', () => {
    const root = newRoot('Root', NOW, 30)
    const appliance = newAppliance(root, NOW, 365)
    const rootValidity = certificateValidity(new X509Certificate(root.certPem))
    expect(certificateValidity(new X509Certificate(appliance.certPem)).notAfter).toBe(rootValidity.notAfter)
  })

  it('refuses to issue from a non-CA, with a mismatched key, or from an expired root', () => {
    const root = newRoot()
    const appliance = newAppliance(root)
    const subject = generateSigningKey()
    const base = { publicKeyPem: subject.publicKeyPem, commonName: 'x', validDays: 10, now: NOW }
    expect(codeOf(() => issueApplianceCert({ ...base, root: appliance }))).toBe('PSW_ERR_CERT_NOT_CA')
    const wrongKey = { certPem: root.certPem, privateKeyPem: subject.privateKeyPem }
    expect(codeOf(() => issueApplianceCert({ ...base, root: wrongKey }))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => issueApplianceCert({ ...base, root, now: NOW + 3651 * DAY }))).toBe('PSW_ERR_CERT_EXPIRED')
  })
})

describe('issueAgentCert', () => {
  it('issues a certificate from a CSR that is bound to the PeerId', async () => {
    const root = newRoot()
    const agent = await newAgent()
    const csrPem = createCsr({ peerId: agent.peerId, privateKey: agent.privateKey })
    const certPem = issueAgentCert({ issuer: root, csrPem, peerId: agent.peerId, validDays: 90, now: NOW })
    const x = new X509Certificate(certPem)
    expect(x.subject).toBe(`CN=${agent.peerId}`)
    expect(x.subjectAltName).toBe(`URI:urn:libp2p:peer:${agent.peerId}`)
    expect(x.ca).toBe(false)
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']) // node names the EKU "keyUsage"
    const verified = verifyAgentCert({ certPem, rootPem: root.certPem, peerId: agent.peerId, now: NOW + DAY })
    expect(verified.peerId).toBe(agent.peerId)
    expect(samePublicKey(verified.publicKey, agent.publicKey)).toBe(true)
  })

  it('issues from a bare public key when it is the PeerId key', async () => {
    const root = newRoot()
    const agent = await newAgent()
    const certPem = issueAgentCert({
      issuer: root,
      publicKey: agent.publicKey,
      peerId: agent.peerId,
      validDays: 90,
      now: NOW,
    })
    expect(verifyAgentCert({ certPem, rootPem: root.certPem, peerId: agent.peerId, now: NOW }).peerId).toBe(
      agent.peerId,
    )
  })

  it("refuses a key or CSR that is not the PeerId's", async () => {
    const root = newRoot()
    const agent = await newAgent()
    const other = await newAgent()
    const base = { issuer: root, peerId: agent.peerId, validDays: 90, now: NOW }
    expect(codeOf(() => issueAgentCert({ ...base, publicKey: other.publicKey }))).toBe('PSW_ERR_CERT_PEER_MISMATCH')
    const otherCsr = createCsr({ peerId: other.peerId, privateKey: other.privateKey })
    expect(codeOf(() => issueAgentCert({ ...base, csrPem: otherCsr }))).toBe('PSW_ERR_CERT_PEER_MISMATCH')
    expect(codeOf(() => issueAgentCert(base))).toBe('PSW_ERR_INVALID_ARGUMENT')
  })
})
