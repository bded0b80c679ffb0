import { createHash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { ByteStream } from './byte-stream.ts'
import { ChunkClient } from './chunk-client.ts'
import { ChunkErrorReason, encodeDataHeader, encodeError } from './chunk-codec.ts'

/** A stream whose incoming bytes the test scripts piece by piece (the client's parser under test). */
function scriptedStream(pieces: Uint8Array[]): ByteStream {
  return {
    status: 'open',
    writeBufferLength: 0,
    send: () => true,
    close: async () => {},
    abort: () => {},
    addEventListener: () => {},
    removeEventListener: () => {},
    async *[Symbol.asyncIterator]() {
      for (const p of pieces) {
        await Promise.resolve()
        yield p
      }
      await new Promise(() => {}) // stays open
    },
  }
}

describe('chunk client parser', () => {
  it('parses responses split at every byte boundary, headers and bodies alike', async () => {
    const a = randomBytes(1000)
    const b = randomBytes(3)
    const wire = Buffer.concat([
      encodeDataHeader(1, a.length),
      a,
      encodeError(2, ChunkErrorReason.NOT_FOUND),
      encodeDataHeader(3, b.length),
      b,
    ])
    const sha = (x: Uint8Array) => createHash('sha256').update(x).digest('hex')
    for (const cut of [1, 2, 5, 8, 9, 10, 500, 1008, 1009, 1012, 1015, 1018, 1020, wire.length - 1]) {
      const pieces = [wire.subarray(0, cut), wire.subarray(cut)]
      const client = new ChunkClient(scriptedStream(pieces))
      const [ra, rb, rc] = await Promise.allSettled([
        client.fetch(sha(a), a.length),
        client.fetch(sha(b), b.length),
        client.fetch(sha(b), b.length),
      ])
      expect(ra.status === 'fulfilled' && Buffer.from(ra.value).equals(a), `cut ${cut}`).toBe(true)
      expect(rb).toMatchObject({ status: 'rejected', reason: { code: 'PSW_ERR_CHUNK_UNAVAILABLE' } })
      expect(rc.status === 'fulfilled' && Buffer.from(rc.value).equals(b), `cut ${cut}`).toBe(true)
    }
  })

  it('receives into a caller buffer when given one', async () => {
    const a = randomBytes(4096)
    const into = Buffer.alloc(8192)
    const client = new ChunkClient(scriptedStream([encodeDataHeader(1, a.length), a]))
    const got = await client.fetch(createHash('sha256').update(a).digest('hex'), a.length, { into })
    expect(got.buffer).toBe(into.buffer)
    expect(Buffer.from(got).equals(a)).toBe(true)
  })
})
