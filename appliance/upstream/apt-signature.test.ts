import {
  armor,
  createCleartextMessage,
  enums,
  generateKey,
  type PrivateKey,
  type PublicKey,
  revokeKey,
  sign,
} from 'openpgp'
import { beforeAll, describe, expect, it } from 'vitest'
import { isPswError } from '../../shared/errors.ts'
import { type AptKeyring, readAptKeyring, verifyInRelease } from './apt-signature.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.UTC(2026, 0, 1)
const TEXT = 'Origin: Example\nSuite: stable\nDate: Thu, 01 Jan 2026 01:00:00 UTC\n-----BEGIN PGP SIGNATURE-----\n'

async function keyPair(options: { date?: number; expiresIn?: number } = {}) {
  const { privateKey, publicKey } = await generateKey({
    type: 'ecc',
    userIDs: [{ name: 'archive', email: 'archive@example.org' }],
    format: 'object',
    date: new Date(options.date ?? T0),
    ...(options.expiresIn === undefined ? {} : { keyExpirationTime: options.expiresIn }),
  })
  return { privateKey, publicKey, armored: publicKey.armor() }
}

async function clearsign(text: string, keys: PrivateKey[], date = T0 + HOUR): Promise<string> {
  return sign({ message: await createCleartextMessage({ text }), signingKeys: keys, date: new Date(date) })
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
  } catch (err) {
    return isPswError(err) ? err.code : `not a PswError: ${String(err)}`
  }
  return undefined
}

describe('verifyInRelease', () => {
  let trusted: Awaited<ReturnType<typeof keyPair>>
  let stranger: Awaited<ReturnType<typeof keyPair>>
  let keyring: AptKeyring
  let signed: string
  const now = { now: T0 + 2 * HOUR }

  beforeAll(async () => {
    trusted = await keyPair()
    stranger = await keyPair()
    keyring = await readAptKeyring([trusted.armored])
    signed = await clearsign(TEXT, [trusted.privateKey])
  })

  it('returns only the signed text and who signed it', async () => {
    const result = await verifyInRelease(signed, keyring, now)
    expect(result.text).toBe(TEXT) // dash-escaped line restored
    expect(result.signers).toEqual([trusted.publicKey.getFingerprint().toUpperCase()])
    expect((await verifyInRelease(Buffer.from(signed), keyring, now)).text).toBe(TEXT)
    expect((await verifyInRelease(`${signed}\n\n`, keyring, now)).text).toBe(TEXT)
  })

  it('refuses text outside the signed frame', async () => {
    expect(await codeOf(verifyInRelease(`Origin: Evil\n\n${signed}`, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
    expect(await codeOf(verifyInRelease(`${signed}\nSHA256:\n evil\n`, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
    expect(await codeOf(verifyInRelease(`${signed}\n${signed}`, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
    const header = signed.replace(/^Hash: .*$/m, '$&\nComment: hello')
    expect(await codeOf(verifyInRelease(header, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a text changed after signing', async () => {
    const tampered = signed.replace('Suite: stable', 'Suite: stabIe')
    expect(tampered).not.toBe(signed)
    expect(await codeOf(verifyInRelease(tampered, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses unsigned text and garbage', async () => {
    expect(await codeOf(verifyInRelease(TEXT, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
    expect(await codeOf(verifyInRelease('', keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
    const noSig = signed.replace(/-----BEGIN PGP SIGNATURE-----[\s\S]*$/, '')
    expect(await codeOf(verifyInRelease(noSig, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
    const emptySig = signed.replace(/(-----BEGIN PGP SIGNATURE-----\n)[\s\S]*(-----END)/, '$1\n$2')
    expect(await codeOf(verifyInRelease(emptySig, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a signature by a key outside the keyring', async () => {
    const other = await clearsign(TEXT, [stranger.privateKey])
    expect(await codeOf(verifyInRelease(other, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('ignores extra signatures by unknown keys when a keyring key signed too', async () => {
    const both = await clearsign(TEXT, [stranger.privateKey, trusted.privateKey])
    const result = await verifyInRelease(both, keyring, now)
    expect(result.signers).toEqual([trusted.publicKey.getFingerprint().toUpperCase()])
  })

  it('refuses a key that is expired now, though valid when it signed', async () => {
    const short = await keyPair({ expiresIn: DAY / 1000 })
    const ring = await readAptKeyring([short.armored])
    const text = await clearsign(TEXT, [short.privateKey])
    expect(await codeOf(verifyInRelease(text, ring, { now: T0 + 2 * HOUR }))).toBeUndefined()
    expect(await codeOf(verifyInRelease(text, ring, { now: T0 + 3 * DAY }))).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a revoked key', async () => {
    const k = await keyPair()
    const text = await clearsign(TEXT, [k.privateKey])
    const { publicKey } = await revokeKey({ key: k.privateKey, date: new Date(T0 + 90 * 60_000), format: 'object' })
    const ring = await readAptKeyring([publicKey.armor()])
    expect(await codeOf(verifyInRelease(text, ring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
  })

  it('refuses a signature made after "now"', async () => {
    const future = await clearsign(TEXT, [trusted.privateKey], T0 + 5 * HOUR)
    expect(await codeOf(verifyInRelease(future, keyring, now))).toBe('PSW_ERR_FEED_SIGNATURE')
  })
})

describe('readAptKeyring', () => {
  it('reads several keys from one armored block', async () => {
    const [a, b] = [await keyPair(), await keyPair()]
    const block = armor(
      enums.armor.publicKey,
      new Uint8Array([...(a.publicKey as PublicKey).write(), ...(b.publicKey as PublicKey).write()]),
    )
    const ring = await readAptKeyring([block])
    expect(ring.fingerprints).toEqual(
      [a.publicKey.getFingerprint(), b.publicKey.getFingerprint()].map((f) => f.toUpperCase()),
    )
  })

  it('refuses private keys, garbage and an empty keyring', async () => {
    const k = await keyPair()
    expect(await codeOf(readAptKeyring([k.privateKey.armor()]))).toBe('PSW_ERR_KEY_INVALID')
    expect(await codeOf(readAptKeyring(['not a key']))).toBe('PSW_ERR_KEY_INVALID')
    expect(await codeOf(readAptKeyring([]))).toBe('PSW_ERR_KEY_INVALID')
  })
})
