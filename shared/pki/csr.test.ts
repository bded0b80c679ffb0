import { generateKeyPairSync } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { createCsr, verifyCsr } from './csr.ts'
import { samePublicKey } from './keys.ts'
import { encodePem, MAX_PEM_CHARS } from './pem.ts'
import { codeOf, editDer, newAgent, nonCanonicalSignature, withSignature } from './test-fixtures.ts'
import { ed25519Signer, writeCsr } from './x509-writer.ts'

const LABEL = 'CERTIFICATE REQUEST'

describe('createCsr / verifyCsr', () => {
  it('round-trips: the CSR proves possession of the PeerId key', async () => {
    const agent = await newAgent()
    const pem = createCsr({ peerId: agent.peerId, privateKey: agent.privateKey })
    expect(pem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/)
    const key = verifyCsr(pem, { expectedPeerId: agent.peerId })
    expect(samePublicKey(key, agent.publicKey)).toBe(true)
  })

  it('refuses to create a CSR for a PeerId whose key it does not hold', async () => {
    const agent = await newAgent()
    const other = await newAgent()
    expect(codeOf(() => createCsr({ peerId: other.peerId, privateKey: agent.privateKey }))).toBe(
      'PSW_ERR_CERT_PEER_MISMATCH',
    )
  })

  it('PSW_ERR_CERT_PEER_MISMATCH: a valid CSR whose key is not the claimed PeerId', async () => {
    const agent = await newAgent()
    const other = await newAgent()
    const pem = createCsr({ peerId: agent.peerId, privateKey: agent.privateKey })
    expect(codeOf(() => verifyCsr(pem, { expectedPeerId: other.peerId }))).toBe('PSW_ERR_CERT_PEER_MISMATCH')
    // a CSR naming the victim in its subject but carrying the attacker's key
    const lying = writeCsr({
      subjectCommonName: other.peerId,
      publicKey: agent.publicKey,
      signer: ed25519Signer(agent.privateKey),
    })
    expect(codeOf(() => verifyCsr(lying, { expectedPeerId: other.peerId }))).toBe('PSW_ERR_CERT_PEER_MISMATCH')
  })

  it('PSW_ERR_CSR_INVALID: a tampered CSR (subject byte flipped)', async () => {
    const agent = await newAgent()
    const pem = createCsr({ peerId: agent.peerId, privateKey: agent.privateKey })
    const marker = Buffer.from(agent.peerId.slice(-6))
    const tampered = editDer(pem, LABEL, (der) => {
      const at = der.indexOf(marker)
      expect(at).toBeGreaterThan(0)
      der[at] = der[at]! ^ 0x01
      return der
    })
    expect(codeOf(() => verifyCsr(tampered, { expectedPeerId: agent.peerId }))).toBe('PSW_ERR_CSR_INVALID')
  })

  // faults.md row 15
  it('PSW_ERR_CSR_INVALID: a non-canonical Ed25519 signature (S + L)', async () => {
    const agent = await newAgent()
    const pem = createCsr({ peerId: agent.peerId, privateKey: agent.privateKey })
    const malleated = withSignature(pem, LABEL, nonCanonicalSignature)
    expect(malleated).not.toBe(pem)
    expect(codeOf(() => verifyCsr(malleated, { expectedPeerId: agent.peerId }))).toBe('PSW_ERR_CSR_INVALID')
  })

  it('PSW_ERR_CSR_INVALID: signed by another key than the one inside', async () => {
    const agent = await newAgent()
    const { privateKey } = generateKeyPairSync('ed25519')
    const pem = writeCsr({
      subjectCommonName: agent.peerId,
      publicKey: agent.publicKey,
      signer: ed25519Signer(privateKey),
    })
    expect(codeOf(() => verifyCsr(pem, { expectedPeerId: agent.peerId }))).toBe('PSW_ERR_CSR_INVALID')
  })

  it('PSW_ERR_CSR_INVALID: malformed input', async () => {
    const agent = await newAgent()
    const pem = createCsr({ peerId: agent.peerId, privateKey: agent.privateKey })
    const opts = { expectedPeerId: agent.peerId }
    const cases = [
      '',
      'hello',
      pem.replace('CERTIFICATE REQUEST', 'CERTIFICATE'),
      pem + pem,
      encodePem(LABEL, Buffer.from('3000', 'hex')),
      editDer(pem, LABEL, (der) => der.subarray(0, der.length - 1)), // truncated
      editDer(pem, LABEL, (der) => Buffer.concat([der, Buffer.from([0])])), // trailing byte
      editDer(pem, LABEL, (der) => {
        der[der.indexOf(Buffer.from('2b6570', 'hex')) + 2] = 0x71 // Ed448 OID in the SPKI (first occurrence)
        return der
      }),
    ]
    for (const input of cases)
      expect(
        codeOf(() => verifyCsr(input, opts)),
        JSON.stringify(input.slice(0, 40)),
      ).toBe('PSW_ERR_CSR_INVALID')
  })

  it('PSW_ERR_CSR_INVALID: a key that is not Ed25519', async () => {
    const agent = await newAgent()
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const pem = writeCsr({
      subjectCommonName: agent.peerId,
      publicKey: ec.publicKey,
      signer: ed25519Signer(agent.privateKey),
    })
    expect(codeOf(() => verifyCsr(pem, { expectedPeerId: agent.peerId }))).toBe('PSW_ERR_CSR_INVALID')
  })

  it('PSW_ERR_TOO_LARGE: input over 16 KiB', async () => {
    const agent = await newAgent()
    const huge = `-----BEGIN ${LABEL}-----\n${'A'.repeat(MAX_PEM_CHARS)}\n-----END ${LABEL}-----\n`
    expect(codeOf(() => verifyCsr(huge, { expectedPeerId: agent.peerId }))).toBe('PSW_ERR_TOO_LARGE')
  })
})
