/**
 * Verifies an APT InRelease file (an OpenPGP cleartext-signed Release) against a configured
 * keyring of ASCII-armored public keys, with OpenPGP.js. Fails closed, always with
 * PSW_ERR_FEED_SIGNATURE: no signature, a malformed or ambiguous frame, a signature that does
 * not verify, no signature by a keyring key, a signing key that is expired or revoked now
 * (gpgv's EXPKEYSIG/REVKEYSIG, which APT refuses), a weak hash (MD5/RIPEMD/SHA-1) or key.
 *
 * Only the signed text is returned: the caller never sees, let alone parses, anything from the
 * unsigned wrapper (armor headers, text around the frame).
 */
import { type PublicKey, readCleartextMessage, readKeys, verify } from 'openpgp'
import { UpstreamError, ValidationError } from '../../shared/errors.ts'

/** Largest InRelease we accept before looking at it (Debian/Ubuntu: ~100–300 KiB). */
export const MAX_INRELEASE_BYTES = 16 << 20
/** Largest armored keyring entry (Debian's archive keyring export is ~50 KiB per key). */
export const MAX_ARMORED_KEY_CHARS = 1 << 20

export interface AptKeyring {
  readonly keys: readonly PublicKey[]
  /** Upper-case hex fingerprints of the primary keys, for logs. */
  readonly fingerprints: readonly string[]
}

/**
 * Reads armored public keys (each string may hold several keys, as `gpg --export --armor`
 * writes them). A private key, an unparseable block or an empty keyring → PSW_ERR_KEY_INVALID.
 */
export async function readAptKeyring(armored: readonly string[]): Promise<AptKeyring> {
  const keys: PublicKey[] = []
  for (const [i, block] of armored.entries()) {
    if (block.length > MAX_ARMORED_KEY_CHARS) {
      throw new ValidationError('PSW_ERR_KEY_INVALID', `keyring entry ${i} is larger than ${MAX_ARMORED_KEY_CHARS}`)
    }
    let parsed: Awaited<ReturnType<typeof readKeys>>
    try {
      parsed = await readKeys({ armoredKeys: block })
    } catch (err) {
      throw new ValidationError('PSW_ERR_KEY_INVALID', `keyring entry ${i} is not an armored OpenPGP public key`, {
        cause: err,
      })
    }
    for (const key of parsed) {
      if (key.isPrivate()) {
        throw new ValidationError(
          'PSW_ERR_KEY_INVALID',
          `keyring entry ${i} holds a private key; give public keys only`,
        )
      }
      keys.push(key as PublicKey)
    }
  }
  if (keys.length === 0) throw new ValidationError('PSW_ERR_KEY_INVALID', 'the keyring holds no key')
  return { keys, fingerprints: keys.map((k) => k.getFingerprint().toUpperCase()) }
}

export interface VerifiedInRelease {
  /** The signed text, line endings `\n`, exactly what the good signature(s) cover. */
  text: string
  /** Fingerprints (upper-case hex) of the keyring keys whose signatures verified. */
  signers: string[]
}

function refuse(message: string, cause?: unknown): UpstreamError {
  return new UpstreamError('PSW_ERR_FEED_SIGNATURE', message, cause === undefined ? {} : { cause })
}

const BEGIN_SIGNED = '-----BEGIN PGP SIGNED MESSAGE-----'
const BEGIN_SIGNATURE = '-----BEGIN PGP SIGNATURE-----'
const END_SIGNATURE = '-----END PGP SIGNATURE-----'

/**
 * Checks the cleartext frame before OpenPGP.js sees it, as strictly as APT's own splitter:
 * the file starts with the BEGIN line, has only `Hash:` armor headers, exactly one signed
 * text and one signature block, and nothing but blank lines after the END line. (OpenPGP.js
 * alone would skip text before the BEGIN line and after the END line.)
 */
function checkFrame(text: string): void {
  const lines = text.split('\n').map((l) => l.replace(/[ \t\r]+$/, ''))
  let i = 0
  if (lines[i++] !== BEGIN_SIGNED) throw refuse('InRelease does not start with a cleartext signature frame')
  for (; ; i++) {
    const line = lines[i]
    if (line === undefined) throw refuse('InRelease ends inside the armor headers')
    if (line === '') break
    if (!/^Hash: [A-Za-z0-9, -]+$/.test(line)) throw refuse('InRelease has an armor header other than Hash')
  }
  for (i++; ; i++) {
    const line = lines[i]
    if (line === undefined) throw refuse('InRelease has no signature block')
    if (line === BEGIN_SIGNATURE) break
    if (line.startsWith('-') && !line.startsWith('- ')) throw refuse('InRelease has an unescaped dash line in its text')
  }
  for (i++; ; i++) {
    const line = lines[i]
    if (line === undefined) throw refuse('InRelease signature block is not terminated')
    if (line === END_SIGNATURE) break
    if (line.startsWith('-')) throw refuse('InRelease signature block is malformed')
  }
  for (i++; i < lines.length; i++) {
    if (lines[i] !== '') throw refuse('InRelease has data after the signature block')
  }
}

/**
 * Verifies `inRelease` at time `now` (ms, from the injected clock) and returns the signed
 * text. Signatures by keys outside the keyring are ignored (Debian signs with several keys);
 * at least one must come from the keyring, and every keyring signature must be good.
 */
export async function verifyInRelease(
  inRelease: string | Uint8Array,
  keyring: AptKeyring,
  options: { now: number },
): Promise<VerifiedInRelease> {
  const size = typeof inRelease === 'string' ? Buffer.byteLength(inRelease) : inRelease.byteLength
  if (size > MAX_INRELEASE_BYTES) {
    throw new UpstreamError('PSW_ERR_TOO_LARGE', `InRelease is ${size} bytes, limit ${MAX_INRELEASE_BYTES}`)
  }
  const armored = typeof inRelease === 'string' ? inRelease : Buffer.from(inRelease).toString('utf8')
  checkFrame(armored)

  const date = new Date(options.now)
  let result: Awaited<ReturnType<typeof verify>>
  try {
    const message = await readCleartextMessage({ cleartextMessage: armored })
    result = await verify({ message, verificationKeys: [...keyring.keys], date })
  } catch (err) {
    throw refuse('InRelease is not a well-formed OpenPGP cleartext signature', err)
  }
  if (result.signatures.length === 0) throw refuse('InRelease carries no signature')

  const signers: string[] = []
  for (const sig of result.signatures) {
    const key = keyring.keys.find((k) => k.getKeys(sig.keyID).length > 0)
    if (key === undefined) continue
    const fingerprint = key.getFingerprint().toUpperCase()
    try {
      await sig.verified
    } catch (err) {
      throw refuse(`InRelease signature by ${fingerprint} does not verify`, err)
    }
    try {
      // verify() checks the key at signing time; APT (gpgv) also refuses a key expired or
      // revoked by now.
      await key.getSigningKey(sig.keyID, date)
    } catch (err) {
      throw refuse(`InRelease is signed by ${fingerprint}, which is expired or revoked now`, err)
    }
    signers.push(fingerprint)
  }
  if (signers.length === 0) {
    const ids = result.signatures.map((s) => s.keyID.toHex().toUpperCase()).join(', ')
    throw refuse(`InRelease is not signed by a key in the keyring (signed by ${ids})`)
  }
  return { text: result.data, signers }
}
