import { ProtocolError } from '../errors.ts'

/**
 * Reads an HTTP response body as UTF-8 text, stopping with PSW_ERR_TOO_LARGE as soon as it
 * exceeds `maxBytes` (the body is streamed, never buffered past the limit).
 */
export async function readBodyLimited(res: Response, maxBytes: number, what: string): Promise<string> {
  const declared = Number(res.headers.get('content-length'))
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {})
    throw new ProtocolError('PSW_ERR_TOO_LARGE', `${what} of ${declared} bytes exceeds ${maxBytes}`)
  }
  if (!res.body) return ''
  const pieces: Uint8Array[] = []
  let total = 0
  for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
    total += piece.byteLength
    if (total > maxBytes) {
      await res.body.cancel().catch(() => {})
      throw new ProtocolError('PSW_ERR_TOO_LARGE', `${what} exceeds ${maxBytes} bytes`)
    }
    pieces.push(piece)
  }
  return Buffer.concat(pieces).toString('utf8')
}
