import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_CHUNKS } from '../content/chunking.ts'
import { ProtocolError } from '../errors.ts'
import { Bitfield } from '../swarm/bitfield.ts'

/**
 * Have protocol, version 1 (docs/protocol.md): how agents tell each other which chunks of a
 * bundle they hold. One stream per bundle and direction: the opener sends, the other side
 * only reads. The first message is BITFIELD (which bundle, what the sender holds), then one
 * HAVE per chunk the sender stores afterwards. Closing the stream means leaving the swarm.
 */
export const HAVE_PROTOCOL = '/patchswarm/have/1.0.0'

export const MSG_BITFIELD = 0x01
export const MSG_HAVE = 0x02
const BITFIELD_HEADER_BYTES = 37 // type(1) bundleId(32) chunkCount(4)
const HAVE_BYTES = 5 // type(1) index(4)

export function encodeBitfield(bundleId: string, have: Bitfield): Uint8Array {
  const buf = Buffer.allocUnsafe(BITFIELD_HEADER_BYTES + have.bytes.byteLength)
  buf[0] = MSG_BITFIELD
  buf.write(bundleId, 1, 32, 'hex')
  buf.writeUInt32BE(have.size, 33)
  buf.set(have.bytes, BITFIELD_HEADER_BYTES)
  return buf
}

export function encodeHave(index: number): Uint8Array {
  const buf = Buffer.allocUnsafe(HAVE_BYTES)
  buf[0] = MSG_HAVE
  buf.writeUInt32BE(index, 1)
  return buf
}

export type HaveMessage = { type: 'bitfield'; bundleId: string; have: Bitfield } | { type: 'have'; index: number }

/**
 * Incremental decoder with hard limits: at most one partial BITFIELD (≤ 6.3 KB for the
 * largest bundle) is buffered, a HAVE before the BITFIELD or out of range is a protocol
 * error, and a peer may announce each chunk at most once (a flood of HAVEs resets the stream).
 */
export class HaveDecoder {
  readonly #buf = new Uint8ArrayList()
  #size: number | undefined
  #haves = 0

  push(data: Uint8Array | Uint8ArrayList): HaveMessage[] {
    this.#buf.append(data)
    const out: HaveMessage[] = []
    while (this.#buf.byteLength > 0) {
      const type = this.#buf.get(0)
      if (type === MSG_BITFIELD) {
        if (this.#size !== undefined) throw new ProtocolError('PSW_ERR_PROTOCOL', 'second BITFIELD on a have stream')
        if (this.#buf.byteLength < BITFIELD_HEADER_BYTES) break
        const count = this.#buf.getUint32(33)
        if (count === 0 || count > MAX_CHUNKS) {
          throw new ProtocolError('PSW_ERR_MESSAGE_TOO_LARGE', `BITFIELD for ${count} chunks`)
        }
        const total = BITFIELD_HEADER_BYTES + Math.ceil(count / 8)
        if (this.#buf.byteLength < total) break
        const msg = this.#buf.subarray(0, total)
        this.#buf.consume(total)
        const bundleId = Buffer.from(msg.subarray(1, 33)).toString('hex')
        // Bitfield's constructor refuses a wrong length or bits past the last chunk.
        let have: Bitfield
        try {
          have = new Bitfield(count, msg.subarray(BITFIELD_HEADER_BYTES))
        } catch (err) {
          throw new ProtocolError('PSW_ERR_PROTOCOL', `bad BITFIELD: ${(err as Error).message}`)
        }
        this.#size = count
        out.push({ type: 'bitfield', bundleId, have })
      } else if (type === MSG_HAVE) {
        if (this.#size === undefined) throw new ProtocolError('PSW_ERR_PROTOCOL', 'HAVE before BITFIELD')
        if (this.#buf.byteLength < HAVE_BYTES) break
        const index = this.#buf.getUint32(1)
        this.#buf.consume(HAVE_BYTES)
        if (index >= this.#size) throw new ProtocolError('PSW_ERR_PROTOCOL', `HAVE ${index} of ${this.#size} chunks`)
        if (++this.#haves > this.#size) throw new ProtocolError('PSW_ERR_PROTOCOL', 'more HAVEs than chunks (flood)')
        out.push({ type: 'have', index })
      } else {
        throw new ProtocolError('PSW_ERR_PROTOCOL', `unknown have message type 0x${(type ?? 0).toString(16)}`)
      }
    }
    return out
  }
}
