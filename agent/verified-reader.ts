import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { chunkLength } from '../shared/content/chunking.ts'
import { IntegrityError } from '../shared/errors.ts'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'

/**
 * Reads a downloaded bundle chunk by chunk, checking each chunk against its signed hash
 * before yielding it and the whole against the signed bundle hash before finishing. The
 * installer consumes exactly these bytes — never the path again after a check.
 */
export async function* readVerified(path: string, manifest: Manifest): AsyncGenerator<Uint8Array> {
  const { size, chunkSize, chunks, sha256 } = manifest.content
  const whole = createHash('sha256')
  const fh = await open(path, 'r')
  try {
    for (let i = 0; i < chunks.length; i++) {
      const len = chunkLength(i, size, chunkSize)
      const buf = Buffer.allocUnsafe(len)
      const { bytesRead } = await fh.read(buf, 0, len, i * chunkSize)
      if (bytesRead !== len || createHash('sha256').update(buf).digest('hex') !== chunks[i]) {
        throw new IntegrityError('PSW_ERR_CHUNK_HASH', `chunk ${i} of the downloaded bundle failed its hash check`)
      }
      whole.update(buf)
      yield buf
    }
  } finally {
    await fh.close()
  }
  if (whole.digest('hex') !== sha256)
    throw new IntegrityError('PSW_ERR_BUNDLE_HASH', 'bundle failed its signed SHA-256')
}
