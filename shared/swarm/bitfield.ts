import { ValidationError } from '../errors.ts'

/**
 * Which chunks of a bundle a peer holds: one bit per chunk, most significant bit first
 * (BitTorrent order), spare bits of the last byte zero. Compact on the wire: a 50 000-chunk
 * bundle is 6.25 KB.
 */
export class Bitfield {
  readonly size: number
  readonly bytes: Uint8Array
  #count: number

  constructor(size: number, bytes?: Uint8Array) {
    if (!Number.isInteger(size) || size < 0)
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `bad bitfield size ${size}`)
    const length = Math.ceil(size / 8)
    if (bytes === undefined) {
      this.bytes = new Uint8Array(length)
      this.#count = 0
      this.size = size
      return
    }
    if (bytes.byteLength !== length) {
      throw new ValidationError('PSW_ERR_SCHEMA', `bitfield of ${bytes.byteLength} bytes for ${size} chunks`)
    }
    const spare = length * 8 - size
    if (spare > 0 && (bytes[length - 1]! & ((1 << spare) - 1)) !== 0) {
      throw new ValidationError('PSW_ERR_SCHEMA', 'bitfield has bits set past its last chunk')
    }
    this.bytes = Uint8Array.from(bytes)
    this.size = size
    this.#count = 0
    for (const b of this.bytes) this.#count += popcount(b)
  }

  static full(size: number): Bitfield {
    const f = new Bitfield(size)
    for (let i = 0; i < size; i++) f.set(i)
    return f
  }

  get count(): number {
    return this.#count
  }

  get complete(): boolean {
    return this.#count === this.size
  }

  has(index: number): boolean {
    return index >= 0 && index < this.size && (this.bytes[index >> 3]! & (0x80 >> (index & 7))) !== 0
  }

  /** Sets a bit; returns whether it was newly set. */
  set(index: number): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.size) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `chunk index ${index} out of range 0..${this.size - 1}`)
    }
    if (this.has(index)) return false
    this.bytes[index >> 3]! |= 0x80 >> (index & 7)
    this.#count++
    return true
  }

  /** Indices set here and not in `other` (what this peer could give the other). */
  *missingIn(other: Bitfield): Generator<number> {
    for (let byte = 0; byte < this.bytes.length; byte++) {
      const diff = this.bytes[byte]! & ~other.bytes[byte]!
      if (diff === 0) continue
      for (let bit = 0; bit < 8; bit++) if (diff & (0x80 >> bit)) yield byte * 8 + bit
    }
  }
}

function popcount(b: number): number {
  let n = b - ((b >> 1) & 0x55)
  n = (n & 0x33) + ((n >> 2) & 0x33)
  return (n + (n >> 4)) & 0x0f
}
