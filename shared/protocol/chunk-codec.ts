import { Uint8ArrayList } from 'uint8arraylist'
import { MAX_CHUNK_SIZE } from '../content/chunking.ts'
import { ProtocolError } from '../errors.ts'

/**
 * Chunk protocol, version 1 (documented in docs/protocol.md). Binary, big-endian, one
 * long-lived stream per peer pair, requests pipelined and answered by request id.
 */
export const CHUNK_PROTOCOL = '/patchswarm/chunk/1.0.0'

export const MSG_REQUEST = 0x01
export const MSG_CANCEL = 0x02
export const MSG_DATA = 0x81
export const MSG_ERROR = 0x82

export const REQUEST_BYTES = 41 // type(1) id(4) hash(32) length(4)
export const CANCEL_BYTES = 5 // type(1) id(4)
export const DATA_HEADER_BYTES = 9 // type(1) id(4) length(4)
export const ERROR_BYTES = 6 // type(1) id(4) reason(1)

export const ChunkErrorReason = {
  NOT_FOUND: 1,
  BAD_REQUEST: 2,
  TOO_MANY_REQUESTS: 3,
  INTERNAL: 4,
  /** Answer to a CANCEL of a request that was still queued: every request gets one answer. */
  CANCELLED: 5,
  /** No free upload slot or queue space now: ask again later or elsewhere (swarm). */
  BUSY: 6,
  /** Super-seeding: others in the swarm hold this chunk; fetch it from them. */
  ELSEWHERE: 7,
} as const
export type ChunkErrorReasonCode = (typeof ChunkErrorReason)[keyof typeof ChunkErrorReason]

export interface ChunkRequest {
  id: number
  /** SHA-256 of the chunk, 32 bytes. */
  hash: Uint8Array
  /** The length the requester expects (from the signed manifest). */
  length: number
}

export function encodeRequest(req: ChunkRequest): Uint8Array {
  const buf = Buffer.allocUnsafe(REQUEST_BYTES)
  buf[0] = MSG_REQUEST
  buf.writeUInt32BE(req.id, 1)
  buf.set(req.hash, 5)
  buf.writeUInt32BE(req.length, 37)
  return buf
}

export function encodeCancel(id: number): Uint8Array {
  const buf = Buffer.allocUnsafe(CANCEL_BYTES)
  buf[0] = MSG_CANCEL
  buf.writeUInt32BE(id, 1)
  return buf
}

export function encodeDataHeader(id: number, length: number): Uint8Array {
  const buf = Buffer.allocUnsafe(DATA_HEADER_BYTES)
  buf[0] = MSG_DATA
  buf.writeUInt32BE(id, 1)
  buf.writeUInt32BE(length, 5)
  return buf
}

export function encodeError(id: number, reason: ChunkErrorReasonCode): Uint8Array {
  const buf = Buffer.allocUnsafe(ERROR_BYTES)
  buf[0] = MSG_ERROR
  buf.writeUInt32BE(id, 1)
  buf[5] = reason
  return buf
}

export type ClientMessage = { type: 'request'; request: ChunkRequest } | { type: 'cancel'; id: number }

/**
 * Incremental decoder for what a server receives. Messages are fixed-size, so a peer can
 * never make the server buffer more than one partial message.
 */
export class ClientMessageDecoder {
  readonly #buf = new Uint8ArrayList()

  push(data: Uint8Array | Uint8ArrayList): ClientMessage[] {
    this.#buf.append(data)
    const out: ClientMessage[] = []
    while (this.#buf.byteLength > 0) {
      const type = this.#buf.get(0)
      if (type === MSG_REQUEST) {
        if (this.#buf.byteLength < REQUEST_BYTES) break
        const msg = this.#buf.subarray(0, REQUEST_BYTES)
        this.#buf.consume(REQUEST_BYTES)
        const view = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength)
        const length = view.readUInt32BE(37)
        if (length === 0 || length > MAX_CHUNK_SIZE) {
          throw new ProtocolError('PSW_ERR_MESSAGE_TOO_LARGE', `chunk request for ${length} bytes`)
        }
        out.push({ type: 'request', request: { id: view.readUInt32BE(1), hash: view.subarray(5, 37), length } })
      } else if (type === MSG_CANCEL) {
        if (this.#buf.byteLength < CANCEL_BYTES) break
        const id = this.#buf.getUint32(1)
        this.#buf.consume(CANCEL_BYTES)
        out.push({ type: 'cancel', id })
      } else {
        throw new ProtocolError('PSW_ERR_PROTOCOL', `unknown chunk message type 0x${(type ?? 0).toString(16)}`)
      }
    }
    return out
  }
}
