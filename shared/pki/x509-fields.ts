/**
 * Reads the few certificate fields node:crypto's X509Certificate does not expose — the exact
 * subject Name bytes, basicConstraints pathLen, keyUsage bits, subjectKeyIdentifier — straight
 * from the DER (`X509Certificate.raw`) with the strict reader. Node only, no forge.
 */
import {
  DerError,
  expectTag,
  oidContents,
  readChildren,
  readSingle,
  readSmallUint,
  Tag,
  type Tlv,
} from './der-reader.ts'

const OID_BASIC_CONSTRAINTS = oidContents('2.5.29.19')
const OID_KEY_USAGE = oidContents('2.5.29.15')
const OID_SUBJECT_KEY_ID = oidContents('2.5.29.14')

/** keyUsage bit numbers (RFC 5280 §4.2.1.3). */
export const KeyUsageBit = { digitalSignature: 0, keyCertSign: 5, cRLSign: 6 } as const

export interface Extension {
  critical: boolean
  /** The extnValue contents (the DER of the extension's own structure). */
  value: Buffer
}

export interface BasicConstraints {
  ca: boolean
  pathLen: number | undefined
}

/** The children of TBSCertificate, with the index of the subject and extensions resolved. */
function tbsFields(certDer: Buffer): { fields: Tlv[]; subject: Tlv; extensions: Tlv | undefined } {
  const cert = readSingle(certDer, Tag.SEQUENCE)
  const [tbs] = readChildren(cert)
  const fields = readChildren(expectTag(tbs, Tag.SEQUENCE))
  const hasVersion = fields[0]?.tag === Tag.CONTEXT_0
  const subject = expectTag(fields[hasVersion ? 5 : 4], Tag.SEQUENCE)
  const extensions = fields.find((f) => f.tag === Tag.CONTEXT_3)
  return { fields, subject, extensions }
}

/** The exact DER bytes of the certificate's subject Name (used as the issuer Name of its children). */
export function subjectNameDer(certDer: Buffer): Buffer {
  return Buffer.from(tbsFields(certDer).subject.bytes)
}

/** All extensions by OID (hex of the OID contents). A repeated extension → DerError. */
export function readExtensions(certDer: Buffer): Map<string, Extension> {
  const out = new Map<string, Extension>()
  const { extensions } = tbsFields(certDer)
  if (!extensions) return out
  const [list] = readChildren(extensions)
  for (const ext of readChildren(expectTag(list, Tag.SEQUENCE))) {
    const parts = readChildren(expectTag(ext, Tag.SEQUENCE))
    const oid = expectTag(parts[0], Tag.OID).value.toString('hex')
    let critical = false
    let i = 1
    if (parts[1]?.tag === Tag.BOOLEAN) {
      critical = parts[1].value.length === 1 && parts[1].value[0] === 0xff
      i = 2
    }
    const value = expectTag(parts[i], Tag.OCTET_STRING).value
    if (parts.length !== i + 1) throw new DerError('extension has extra fields')
    if (out.has(oid)) throw new DerError(`duplicate extension ${oid}`)
    out.set(oid, { critical, value: Buffer.from(value) })
  }
  return out
}

/** basicConstraints, or undefined when the certificate has none. */
export function readBasicConstraints(certDer: Buffer): BasicConstraints | undefined {
  const ext = readExtensions(certDer).get(OID_BASIC_CONSTRAINTS.toString('hex'))
  if (!ext) return undefined
  const parts = readChildren(readSingle(ext.value, Tag.SEQUENCE))
  let ca = false
  let i = 0
  if (parts[0]?.tag === Tag.BOOLEAN) {
    ca = parts[0].value.length === 1 && parts[0].value[0] === 0xff
    i = 1
  }
  const pathLen = parts[i] ? readSmallUint(parts[i]!) : undefined
  return { ca, pathLen }
}

/** The set keyUsage bits, or undefined when the certificate has no keyUsage extension. */
export function readKeyUsage(certDer: Buffer): Set<number> | undefined {
  const ext = readExtensions(certDer).get(OID_KEY_USAGE.toString('hex'))
  if (!ext) return undefined
  const bits = readSingle(ext.value, Tag.BIT_STRING).value
  if (bits.length === 0) throw new DerError('empty keyUsage')
  const set = new Set<number>()
  for (let byte = 1; byte < bits.length; byte++) {
    for (let bit = 0; bit < 8; bit++) if (bits[byte]! & (0x80 >> bit)) set.add((byte - 1) * 8 + bit)
  }
  return set
}

/** The subjectKeyIdentifier bytes, or undefined. */
export function readSubjectKeyId(certDer: Buffer): Buffer | undefined {
  const ext = readExtensions(certDer).get(OID_SUBJECT_KEY_ID.toString('hex'))
  return ext ? Buffer.from(readSingle(ext.value, Tag.OCTET_STRING).value) : undefined
}
