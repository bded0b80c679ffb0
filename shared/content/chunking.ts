import { createHash } from 'node:crypto'
import { ValidationError } from '../errors.ts'

/**
 * Chunk size when neither the operator nor the request names one: see {@link autoChunkSize}.
 * 1 MiB is what a bundle of 1 GiB gets; older data directories that stored this value in
 * their config keep it.
 */
export const DEFAULT_CHUNK_SIZE = 1 << 20
export const MIN_CHUNK_SIZE = 64 << 10
export const MAX_CHUNK_SIZE = 16 << 20
/** Upper bound on chunks per bundle; keeps manifests under MAX_MANIFEST_BYTES. */
export const MAX_CHUNKS = 50_000

/** Smallest and largest chunk sizes {@link autoChunkSize} picks. */
export const AUTO_MIN_CHUNK_SIZE = 256 << 10
export const AUTO_MAX_CHUNK_SIZE = 4 << 20
/** Chunks per bundle {@link autoChunkSize} aims for. */
export const AUTO_TARGET_CHUNKS = 1024

/**
 * The chunk size for a bundle of `totalSize` bytes, as BitTorrent clients pick piece sizes:
 * the smallest power of two that gives at most ~1 024 chunks, between 256 KiB and 4 MiB.
 * Small chunks pipeline better through the swarm — an agent can pass a chunk on only once it
 * has the whole of it, so each hop costs one chunk's transfer time; in the simulator at 1 000
 * agents and 64 MiB, 1 MiB chunks gave ratios of 1.08 and 1.27, 256 KiB chunks 1.02 and 1.08
 * (docs/benchmarks.md). Large bundles get larger chunks, so the per-chunk costs (a request,
 * a HAVE to every peer, 67 bytes of manifest) stay bounded: 64 MiB → 256 KiB, 1 GiB →
 * 1 MiB, 4 GiB and more → 4 MiB.
 */
export function autoChunkSize(totalSize: number): number {
  let size = AUTO_MIN_CHUNK_SIZE
  while (size < AUTO_MAX_CHUNK_SIZE && size * AUTO_TARGET_CHUNKS < totalSize) size *= 2
  return size
}

/** Throws PSW_ERR_CHUNK_SIZE_CONFIG unless `size` is a power of two in [64 KiB, 16 MiB]. */
export function validateChunkSize(size: number): number {
  if (!Number.isInteger(size) || size < MIN_CHUNK_SIZE || size > MAX_CHUNK_SIZE || (size & (size - 1)) !== 0) {
    throw new ValidationError(
      'PSW_ERR_CHUNK_SIZE_CONFIG',
      `chunk size ${size} is not a power of two between 64 KiB and 16 MiB`,
    )
  }
  return size
}

export function chunkCount(totalSize: number, chunkSize: number): number {
  return totalSize === 0 ? 0 : Math.ceil(totalSize / chunkSize)
}

/** Length of chunk `index` of a bundle of `totalSize` bytes. */
export function chunkLength(index: number, totalSize: number, chunkSize: number): number {
  const start = index * chunkSize
  return Math.max(0, Math.min(chunkSize, totalSize - start))
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * Re-slices a byte stream into chunks of exactly `chunkSize` bytes (the last may be shorter).
 * Memory: one chunk buffer, reused only after the consumer has finished with it (each yielded
 * buffer is fresh, so consumers may keep it while awaiting I/O).
 */
export async function* rechunk(input: AsyncIterable<Uint8Array>, chunkSize: number): AsyncGenerator<Uint8Array> {
  let buf = Buffer.allocUnsafe(chunkSize)
  let fill = 0
  for await (const piece of input) {
    let offset = 0
    while (offset < piece.byteLength) {
      const n = Math.min(chunkSize - fill, piece.byteLength - offset)
      buf.set(piece.subarray(offset, offset + n), fill)
      fill += n
      offset += n
      if (fill === chunkSize) {
        yield buf
        buf = Buffer.allocUnsafe(chunkSize)
        fill = 0
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill)
}

export interface ChunkedContent {
  size: number
  chunkSize: number
  /** SHA-256 over the whole content, hex. */
  sha256: string
  /** SHA-256 of each chunk in order, hex. */
  chunks: string[]
}

/**
 * Streams `input` once: hashes every chunk and the whole, handing each chunk to `onChunk`
 * (e.g. to store it) before reading on, so memory stays at one chunk.
 */
export async function chunkAndHash(
  input: AsyncIterable<Uint8Array>,
  chunkSize: number,
  onChunk?: (index: number, hash: string, data: Uint8Array) => Promise<void> | void,
): Promise<ChunkedContent> {
  validateChunkSize(chunkSize)
  const whole = createHash('sha256')
  const chunks: string[] = []
  let size = 0
  for await (const chunk of rechunk(input, chunkSize)) {
    if (chunks.length >= MAX_CHUNKS) {
      throw new ValidationError('PSW_ERR_TOO_LARGE', `content has more than ${MAX_CHUNKS} chunks of ${chunkSize} bytes`)
    }
    whole.update(chunk)
    const hash = sha256Hex(chunk)
    if (onChunk) await onChunk(chunks.length, hash, chunk)
    chunks.push(hash)
    size += chunk.byteLength
  }
  return { size, chunkSize, sha256: whole.digest('hex'), chunks }
}
