import type { ByteStream } from '../../shared/protocol/byte-stream.ts'

/**
 * The appliance's side of one control stream for benchmarks that drive the real control
 * handler without libp2p: the request arrives in one piece, the answer is kept.
 */
export function oneShotStream(request: Uint8Array): { stream: ByteStream; answer: () => unknown } {
  const sent: Uint8Array[] = []
  const stream: ByteStream = {
    async *[Symbol.asyncIterator]() {
      yield request
    },
    send(data) {
      sent.push(data instanceof Uint8Array ? data : data.subarray())
      return true
    },
    async close() {},
    abort(err) {
      throw err
    },
    addEventListener() {},
    removeEventListener() {},
    status: 'open',
    writeBufferLength: 0,
  }
  return { stream, answer: () => JSON.parse(Buffer.concat(sent).subarray(4).toString('utf8')) }
}

/** A control-protocol frame: a 4-byte big-endian length, then the JSON. */
export function frame(value: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(value), 'utf8')
  const out = Buffer.alloc(4 + body.byteLength)
  out.writeUInt32BE(body.byteLength, 0)
  body.copy(out, 4)
  return out
}
