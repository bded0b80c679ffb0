import { type ErrorCode, TrustError, ValidationError } from '../errors.ts'

/** Largest PEM text (certificate or CSR) accepted from anyone. */
export const MAX_PEM_CHARS = 16 * 1024

/** Wraps DER in a PEM block with 64-character lines. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64')
  const lines = b64.match(/.{1,64}/g) ?? []
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`
}

/**
 * Decodes exactly one PEM block with the given label. Text over {@link MAX_PEM_CHARS} →
 * PSW_ERR_TOO_LARGE; anything else than one clean block (other labels, headers, a second
 * block, bad base64) → `code`.
 */
export function decodePem(pem: unknown, label: string, code: ErrorCode): Buffer {
  if (typeof pem !== 'string') throw new TrustError(code, `${label} must be a PEM string`)
  if (pem.length > MAX_PEM_CHARS) {
    throw new ValidationError('PSW_ERR_TOO_LARGE', `${label} PEM exceeds ${MAX_PEM_CHARS} characters`, {
      details: { limit: MAX_PEM_CHARS, actual: pem.length },
    })
  }
  const match = /^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END ([A-Z0-9 ]+)-----\s*$/.exec(pem)
  if (!match || match[1] !== label || match[3] !== label) {
    throw new TrustError(code, `not a single PEM block labelled ${label}`)
  }
  const b64 = match[2]!.replace(/[\r\n]/g, '')
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0 || b64.length === 0) {
    throw new TrustError(code, `${label} PEM has invalid base64`)
  }
  return Buffer.from(b64, 'base64')
}
