/**
 * Test fixtures for the PKI tests: real keys, a site root, an appliance, libp2p agents, and
 * the tools to forge hostile signatures (faults.md rows 15–16). Not used by library code.
 */
import { createPublicKey, type KeyObject } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createRootCa, issueApplianceCert } from './cert-builder.ts'
import { generateSigningKey, type SigningKeyPem } from './keys.ts'
import { libp2pPrivateKeyToKeyObject } from './peer-keys.ts'
import { decodePem, encodePem } from './pem.ts'

/** A fixed "now" for tests: 2026-01-01T00:00:00Z. */
export const NOW = Date.UTC(2026, 0, 1)
export const DAY = 86_400_000

/** Order of the Ed25519 base point: L = 2^252 + 27742317777372353535851937790883648493. */
export const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n

export interface Credentials extends SigningKeyPem {
  certPem: string
}

export function newRoot(commonName = 'Site Root', now = NOW, validDays = 3650): Credentials {
  const keys = generateSigningKey()
  return { ...keys, certPem: createRootCa({ commonName, ...keys, validDays, now }) }
}

export function newAppliance(root: Credentials, now = NOW, validDays = 365): Credentials {
  const keys = generateSigningKey()
  const certPem = issueApplianceCert({
    root,
    publicKeyPem: keys.publicKeyPem,
    commonName: 'appliance.branch.example',
    dnsNames: ['appliance.branch.example'],
    validDays,
    now,
  })
  return { ...keys, certPem }
}

export interface Agent {
  libp2pKey: PrivateKey
  peerId: string
  privateKey: KeyObject
  publicKey: KeyObject
}

/** A libp2p Ed25519 identity, as an agent has one. */
export async function newAgent(): Promise<Agent> {
  const libp2pKey = await generateKeyPair('Ed25519')
  const privateKey = libp2pPrivateKeyToKeyObject(libp2pKey)
  return {
    libp2pKey,
    peerId: peerIdFromPrivateKey(libp2pKey).toString(),
    privateKey,
    publicKey: createPublicKey(privateKey),
  }
}

/** The `code` of what `fn` throws (undefined when it does not throw). */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code ?? `non-coded: ${String(err)}`
  }
  return undefined
}

/**
 * Malleates an Ed25519 signature R ‖ S into R ‖ (S + L). Since [S + L]B = [S]B it satisfies
 * the verification equation, but S ≥ L is non-canonical and must be rejected (RFC 8032 §5.1.7).
 */
export function nonCanonicalSignature(signature: Uint8Array): Buffer {
  const s = BigInt('0x' + Buffer.from(signature.subarray(32, 64)).reverse().toString('hex'))
  const malleated = s + ED25519_L
  const sBytes = Buffer.from(malleated.toString(16).padStart(64, '0'), 'hex').reverse()
  return Buffer.concat([Buffer.from(signature.subarray(0, 32)), sBytes])
}

/** Replaces the Ed25519 signature (the last 64 bytes of the DER) of a certificate or CSR. */
export function withSignature(pem: string, label: string, transform: (sig: Buffer) => Buffer): string {
  const der = decodePem(pem, label, 'PSW_ERR_INTERNAL')
  const sig = transform(der.subarray(der.length - 64))
  if (sig.length !== 64) throw new Error('signature must stay 64 bytes')
  return encodePem(label, Buffer.concat([der.subarray(0, der.length - 64), sig]))
}

/** Applies `edit` to a copy of the DER inside a PEM. */
export function editDer(pem: string, label: string, edit: (der: Buffer) => Buffer): string {
  return encodePem(label, edit(Buffer.from(decodePem(pem, label, 'PSW_ERR_INTERNAL'))))
}

/** Integer cube root, rounded up. */
export function cubeRootCeil(n: bigint): bigint {
  let x = 1n << BigInt(Math.ceil(n.toString(2).length / 3) + 1)
  for (;;) {
    const y = (2n * x + n / (x * x)) / 3n
    if (y >= x) break
    x = y
  }
  while (x ** 3n < n) x++
  while (x > 0n && (x - 1n) ** 3n >= n) x--
  return x
}

/**
 * Bleichenbacher's 2006 forgery for RSA with e = 3 and no modulus-sized check: an integer whose
 * cube starts with 00 01 FF…FF 00 ‖ DigestInfo(SHA-256, digest) and ends with garbage. A lax
 * PKCS#1 v1.5 parser that reads left to right and ignores what follows accepts it.
 */
export function forgeRsaE3Signature(digest: Buffer, modulusBytes: number): { signature: Buffer; prefix: Buffer } {
  const digestInfo = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), digest])
  const prefix = Buffer.concat([Buffer.from([0x00, 0x01]), Buffer.alloc(8, 0xff), Buffer.from([0x00]), digestInfo])
  // zero tail: the cube root rounded up adds < 2^1370 to the target, far below the prefix
  const target = Buffer.concat([prefix, Buffer.alloc(modulusBytes - prefix.length, 0)])
  const root = cubeRootCeil(BigInt('0x' + target.toString('hex')))
  return { signature: Buffer.from(root.toString(16).padStart(modulusBytes * 2, '0'), 'hex'), prefix }
}
