/**
 * A minimal, strict DER reader (node only, no forge). It locates the exact bytes of ASN.1
 * elements — e.g. the signed CertificationRequestInfo of a CSR, or a certificate's extensions —
 * so that verification works on the bytes as received, never on a re-encoding.
 *
 * Strict means: definite lengths only, minimal length encoding, single-byte tags, and no bytes
 * left over where a single element is expected. Anything else throws {@link DerError}; callers
 * map it to their own error code.
 */

/** Thrown for malformed DER. Internal: callers wrap it into a PswError. */
export class DerError extends Error {
  override name = 'DerError'
}

/** Universal and context tags used by the PKI code. */
export const Tag = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  SEQUENCE: 0x30,
  SET: 0x31,
  /** `[0]` constructed (certificate version, CSR attributes). */
  CONTEXT_0: 0xa0,
  /** `[3]` constructed (certificate extensions). */
  CONTEXT_3: 0xa3,
} as const

/** One element: its tag, the whole encoding (`bytes`) and its contents (`value`). */
export interface Tlv {
  tag: number
  /** Offset of the element in the buffer it was read from. */
  start: number
  end: number
  /** Tag, length and contents: the exact encoded bytes. */
  bytes: Buffer
  /** Contents only. */
  value: Buffer
}

/** Reads one element starting at `offset`. */
export function readTlv(buf: Buffer, offset = 0): Tlv {
  if (offset + 2 > buf.length) throw new DerError('truncated element header')
  const tag = buf[offset]!
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte tags are not supported')
  let pos = offset + 1
  const first = buf[pos++]!
  let length: number
  if (first < 0x80) {
    length = first
  } else {
    const count = first & 0x7f
    if (count === 0) throw new DerError('indefinite length is not DER')
    if (count > 4) throw new DerError('length too large')
    if (pos + count > buf.length) throw new DerError('truncated length')
    if (buf[pos] === 0) throw new DerError('non-minimal length encoding')
    length = 0
    for (let i = 0; i < count; i++) length = length * 256 + buf[pos++]!
    if (length < 0x80) throw new DerError('non-minimal length encoding')
  }
  const end = pos + length
  if (end > buf.length) throw new DerError('element runs past the end of its container')
  return { tag, start: offset, end, bytes: buf.subarray(offset, end), value: buf.subarray(pos, end) }
}

/** Reads exactly one element that fills `buf` completely. */
export function readSingle(buf: Buffer, expectedTag?: number): Tlv {
  const tlv = readTlv(buf, 0)
  if (tlv.end !== buf.length) throw new DerError('trailing bytes after element')
  if (expectedTag !== undefined) expectTag(tlv, expectedTag)
  return tlv
}

/** The elements inside a constructed element, in order. */
export function readChildren(parent: Tlv): Tlv[] {
  if ((parent.tag & 0x20) === 0) throw new DerError('element is not constructed')
  const children: Tlv[] = []
  let offset = 0
  while (offset < parent.value.length) {
    const child = readTlv(parent.value, offset)
    children.push(child)
    offset = child.end
  }
  return children
}

/** Throws unless `tlv` has the given tag. */
export function expectTag(tlv: Tlv | undefined, tag: number): Tlv {
  if (!tlv) throw new DerError(`missing element (expected tag 0x${tag.toString(16)})`)
  if (tlv.tag !== tag) throw new DerError(`unexpected tag 0x${tlv.tag.toString(16)} (expected 0x${tag.toString(16)})`)
  return tlv
}

/** Encodes a dotted OID as its DER contents bytes (without tag and length), for comparisons. */
export function oidContents(dotted: string): Buffer {
  const arcs = dotted.split('.').map((a) => Number.parseInt(a, 10))
  const [a = 0, b = 0, ...rest] = arcs
  const out: number[] = [a * 40 + b]
  for (const arc of rest) {
    const septets: number[] = [arc & 0x7f]
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) septets.unshift((v & 0x7f) | 0x80)
    out.push(...septets)
  }
  return Buffer.from(out)
}

/** Decodes a small non-negative DER INTEGER (up to 2^31). */
export function readSmallUint(tlv: Tlv): number {
  expectTag(tlv, Tag.INTEGER)
  const v = tlv.value
  if (v.length === 0 || v.length > 4) throw new DerError('integer out of range')
  if (v[0]! & 0x80) throw new DerError('negative integer')
  if (v.length > 1 && v[0] === 0 && !(v[1]! & 0x80)) throw new DerError('non-minimal integer')
  return v.readUIntBE(0, v.length)
}
