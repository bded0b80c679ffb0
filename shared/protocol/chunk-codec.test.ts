import { describe, expect, it } from 'vitest'
import {
  ChunkErrorReason,
  ClientMessageDecoder,
  encodeCancel,
  encodeDataHeader,
  encodeError,
  encodeRequest,
} from './chunk-codec.ts'

// Byte-level fixtures: a silent change of the wire format fails here (docs/protocol.md).
const HASH = Buffer.from('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff', 'hex')

describe('chunk protocol v1 wire format', () => {
  it('encodes each message exactly as documented', () => {
    expect(Buffer.from(encodeRequest({ id: 0x01020304, hash: HASH, length: 0x00100000 })).toString('hex')).toBe(
      `0101020304${HASH.toString('hex')}00100000`,
    )
    expect(Buffer.from(encodeCancel(7)).toString('hex')).toBe('0200000007')
    expect(Buffer.from(encodeDataHeader(7, 65536)).toString('hex')).toBe('810000000700010000')
    expect(Buffer.from(encodeError(7, ChunkErrorReason.NOT_FOUND)).toString('hex')).toBe('820000000701')
  })

  it('decodes requests split at every byte boundary', () => {
    const wire = Buffer.concat([encodeRequest({ id: 9, hash: HASH, length: 4096 }), encodeCancel(9)])
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new ClientMessageDecoder()
      const msgs = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))]
      expect(msgs).toHaveLength(2)
      expect(msgs[0]).toMatchObject({ type: 'request', request: { id: 9, length: 4096 } })
      expect(msgs[1]).toEqual({ type: 'cancel', id: 9 })
    }
  })

  it('rejects unknown types and out-of-range lengths', () => {
    expect(() => new ClientMessageDecoder().push(Buffer.from([0x42]))).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_PROTOCOL' }),
    )
    expect(() => new ClientMessageDecoder().push(encodeRequest({ id: 1, hash: HASH, length: 0 }))).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_MESSAGE_TOO_LARGE' }),
    )
    expect(() => new ClientMessageDecoder().push(encodeRequest({ id: 1, hash: HASH, length: (16 << 20) + 1 }))).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_MESSAGE_TOO_LARGE' }),
    )
  })
})
