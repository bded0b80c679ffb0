import { createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import {
  generateSigningKey,
  publicKeyFingerprint,
  samePublicKey,
  signEd25519,
  spkiDer,
  toPrivateKey,
  toPublicKey,
  verifyEd25519,
} from './keys.ts'
import { canonicalPeerId, ed25519RawPublicKey, libp2pPrivateKeyToKeyObject, peerIdToPublicKey } from './peer-keys.ts'
import { codeOf, newAgent, nonCanonicalSignature } from './test-fixtures.ts'

describe('signing keys', () => {
  it('generates Ed25519 PEM key pairs that sign and verify', () => {
    const { privateKeyPem, publicKeyPem } = generateSigningKey()
    expect(privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/)
    expect(publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/)
    const sig = signEd25519(Buffer.from('manifest'), privateKeyPem)
    expect(verifyEd25519(Buffer.from('manifest'), sig, publicKeyPem)).toBe(true)
    expect(verifyEd25519(Buffer.from('manifesT'), sig, publicKeyPem)).toBe(false)
  })

  it('names a key by the SHA-256 of its SPKI, whatever form it is given in', () => {
    const { privateKeyPem, publicKeyPem } = generateSigningKey()
    const id = publicKeyFingerprint(publicKeyPem)
    expect(id).toMatch(/^[0-9a-f]{64}$/)
    const pub = createPublicKey(publicKeyPem)
    expect(publicKeyFingerprint(pub)).toBe(id)
    expect(publicKeyFingerprint(spkiDer(pub))).toBe(id)
    expect(publicKeyFingerprint(createPrivateKey(privateKeyPem))).toBe(id)
    expect(publicKeyFingerprint(generateSigningKey().publicKeyPem)).not.toBe(id)
  })

  it('refuses keys that are not Ed25519', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    expect(codeOf(() => toPrivateKey(ec.privateKey))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => toPublicKey(ec.publicKey))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => toPrivateKey('not a pem'))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => toPublicKey(Buffer.from('garbage')))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => verifyEd25519(Buffer.from('x'), Buffer.alloc(64), ec.publicKey))).toBe('PSW_ERR_KEY_INVALID')
  })

  // faults.md row 15
  it('rejects a non-canonical Ed25519 signature (S + L) that node:crypto would otherwise compute as valid', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const data = Buffer.from('patchswarm-signed-v1\n{"type":"manifest"}')
    const sig = sign(null, data, privateKey)
    expect(verifyEd25519(data, sig, publicKey)).toBe(true)
    const malleated = nonCanonicalSignature(sig)
    expect(malleated.equals(sig)).toBe(false)
    expect(verifyEd25519(data, malleated, publicKey)).toBe(false)
  })

  it('returns false for signatures of the wrong length', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519')
    const sig = sign(null, Buffer.from('x'), privateKey)
    expect(verifyEd25519(Buffer.from('x'), sig.subarray(0, 63), publicKey)).toBe(false)
    expect(verifyEd25519(Buffer.from('x'), Buffer.concat([sig, Buffer.from([0])]), publicKey)).toBe(false)
  })
})

describe('libp2p identity keys', () => {
  it('converts a libp2p Ed25519 key to node:crypto; signatures verify both ways', async () => {
    const agent = await newAgent()
    const data = Buffer.from('hello swarm')
    const nodeSig = sign(null, data, agent.privateKey)
    expect(await agent.libp2pKey.publicKey.verify(data, nodeSig)).toBe(true)
    const libp2pSig = await agent.libp2pKey.sign(data)
    expect(verifyEd25519(data, libp2pSig, agent.publicKey)).toBe(true)
    expect(ed25519RawPublicKey(agent.publicKey).equals(Buffer.from(agent.libp2pKey.publicKey.raw))).toBe(true)
  })

  it("extracts the PeerId's public key", async () => {
    const agent = await newAgent()
    expect(samePublicKey(peerIdToPublicKey(agent.peerId), agent.publicKey)).toBe(true)
    expect(samePublicKey(peerIdToPublicKey(peerIdFromPrivateKey(agent.libp2pKey)), agent.publicKey)).toBe(true)
    const other = await newAgent()
    expect(samePublicKey(peerIdToPublicKey(other.peerId), agent.publicKey)).toBe(false)
  })

  it('canonicalises a PeerId given as a CID string', async () => {
    const agent = await newAgent()
    const cid = peerIdFromPrivateKey(agent.libp2pKey).toCID().toString()
    expect(cid).not.toBe(agent.peerId)
    expect(canonicalPeerId(cid)).toBe(agent.peerId)
  })

  it('refuses secp256k1 identities and unparsable PeerIds', async () => {
    const secp = await generateKeyPair('secp256k1')
    expect(codeOf(() => libp2pPrivateKeyToKeyObject(secp))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => peerIdToPublicKey(peerIdFromPrivateKey(secp).toString()))).toBe('PSW_ERR_KEY_INVALID')
    expect(codeOf(() => peerIdToPublicKey('12D3KooNotAPeerId'))).toBe('PSW_ERR_INVALID_ARGUMENT')
  })

  it('refuses a libp2p key whose public half does not match its seed', async () => {
    const a = await generateKeyPair('Ed25519')
    const b = await generateKeyPair('Ed25519')
    const spliced = { type: 'Ed25519', raw: Buffer.concat([a.raw.subarray(0, 32), b.raw.subarray(32)]) }
    expect(codeOf(() => libp2pPrivateKeyToKeyObject(spliced as unknown as typeof a))).toBe('PSW_ERR_KEY_INVALID')
  })
})
