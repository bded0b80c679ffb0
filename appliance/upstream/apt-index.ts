/**
 * Fetches one APT index (e.g. `main/binary-amd64/Packages`) the signed Release lists, checks
 * its size and SHA-256 against the Release before anything reads it, and decompresses it with
 * an output limit.
 *
 * Compression: `.gz` first (node:zlib, in the thread pool, `maxOutputLength`), then `.xz`,
 * then the plain file. Node has no xz decoder: `.xz` is piped through Debian's `xz -dc`
 * (package xz-utils, priority required, so present on every Debian system; no native npm
 * addon or WebAssembly port to vet) with a clean environment, one thread, a memory limit, a
 * timeout and an output byte limit that kills it. Only bytes whose hash already matched the
 * signed Release ever reach it. Where `xz` is not installed `.xz` is simply not a candidate.
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { constants } from 'node:fs'
import { access } from 'node:fs/promises'
import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import { hasCode, UpstreamError } from '../../shared/errors.ts'
import type { AptRelease, AptReleaseFile } from './apt-release.ts'
import type { IndexFetcher } from './feed-types.ts'

const gunzipAsync = promisify(gunzip)

export const DEFAULT_XZ_PATH = '/usr/bin/xz'
const XZ_MEMLIMIT = '256MiB'
const XZ_TIMEOUT_MS = 120_000

export type IndexCompression = 'gz' | 'xz' | 'none'

export interface IndexCandidate {
  file: AptReleaseFile
  compression: IndexCompression
}

const SUFFIX: Record<IndexCompression, string> = { gz: '.gz', xz: '.xz', none: '' }

/** Whether an xz binary is there to run (so `.xz` indexes can be used). */
export async function xzAvailable(xzPath: string): Promise<boolean> {
  try {
    await access(xzPath, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The variants of `<dir>/<name>` that the Release lists, in order of preference
 * (`.gz`, `.xz` when `xz` is usable, plain).
 */
export function indexCandidates(release: AptRelease, dir: string, name: string, xz: boolean): IndexCandidate[] {
  const order: IndexCompression[] = xz ? ['gz', 'xz', 'none'] : ['gz', 'none']
  const out: IndexCandidate[] = []
  for (const compression of order) {
    const file = release.files.get(`${dir}/${name}${SUFFIX[compression]}`)
    if (file !== undefined) out.push({ file, compression })
  }
  return out
}

/** Size and SHA-256 of fetched index bytes against the signed Release → PSW_ERR_FEED_INDEX_HASH. */
export function checkIndexBytes(data: Uint8Array, file: AptReleaseFile): void {
  if (data.byteLength !== file.size) {
    throw new UpstreamError(
      'PSW_ERR_FEED_INDEX_HASH',
      `${file.path} is ${data.byteLength} bytes, the signed Release says ${file.size}`,
      { details: { path: file.path, size: data.byteLength, expected: file.size } },
    )
  }
  const actual = createHash('sha256').update(data).digest('hex')
  if (actual !== file.sha256) {
    throw new UpstreamError(
      'PSW_ERR_FEED_INDEX_HASH',
      `${file.path} does not match the SHA-256 of the signed Release`,
      {
        details: { path: file.path, sha256: actual, expected: file.sha256 },
      },
    )
  }
}

export interface DecompressOptions {
  /** Output limit in bytes → PSW_ERR_TOO_LARGE past it. */
  maxBytes: number
  xzPath?: string
  signal?: AbortSignal
}

function tooLarge(what: string, maxBytes: number): UpstreamError {
  return new UpstreamError('PSW_ERR_TOO_LARGE', `${what} decompresses to more than ${maxBytes} bytes`)
}

/** Decompresses a verified index; corrupt data → PSW_ERR_FEED_INVALID. */
export async function decompressIndex(
  data: Buffer,
  compression: IndexCompression,
  what: string,
  options: DecompressOptions,
): Promise<Buffer> {
  if (compression === 'none') {
    if (data.byteLength > options.maxBytes) throw tooLarge(what, options.maxBytes)
    return data
  }
  if (compression === 'gz') {
    try {
      return await gunzipAsync(data, { maxOutputLength: options.maxBytes })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(what, options.maxBytes)
      throw new UpstreamError('PSW_ERR_FEED_INVALID', `${what} is not valid gzip data`, { cause: err })
    }
  }
  return unxz(data, what, options)
}

function unxz(data: Buffer, what: string, options: DecompressOptions): Promise<Buffer> {
  const xzPath = options.xzPath ?? DEFAULT_XZ_PATH
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(options.signal.reason)
      return
    }
    const child = spawn(
      xzPath,
      ['--decompress', '--stdout', '--quiet', '--format=xz', '--threads=1', `--memlimit-decompress=${XZ_MEMLIMIT}`],
      { stdio: ['pipe', 'pipe', 'pipe'], env: {}, timeout: XZ_TIMEOUT_MS, killSignal: 'SIGKILL' },
    )
    const chunks: Buffer[] = []
    let total = 0
    let stderr = ''
    let settled = false
    const onAbort = (): void => fail(options.signal?.reason ?? new Error('aborted'))
    const fail = (err: unknown): void => {
      if (settled) return
      settled = true
      options.signal?.removeEventListener('abort', onAbort)
      child.kill('SIGKILL')
      reject(err)
    }
    options.signal?.addEventListener('abort', onAbort, { once: true })

    child.stdout.on('data', (chunk: Buffer) => {
      total += chunk.byteLength
      if (total > options.maxBytes) fail(tooLarge(what, options.maxBytes))
      else chunks.push(chunk)
    })
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 2000) stderr += chunk.toString('utf8')
    })
    child.stdin.on('error', () => {}) // EPIPE when xz exits (or is killed) before reading all input
    child.on('error', (err) => fail(new UpstreamError('PSW_ERR_INTERNAL', `cannot run ${xzPath}`, { cause: err })))
    child.on('close', (code, signal) => {
      if (settled) return
      if (code === 0) {
        settled = true
        options.signal?.removeEventListener('abort', onAbort)
        resolve(Buffer.concat(chunks, total))
      } else if (signal !== null) {
        fail(new UpstreamError('PSW_ERR_INTERNAL', `${xzPath} was killed (${signal}) while decompressing ${what}`))
      } else {
        const reason = stderr.trim().slice(0, 500)
        fail(
          new UpstreamError('PSW_ERR_FEED_INVALID', `${what} is not valid xz data: ${reason}`, { details: { code } }),
        )
      }
    })
    child.stdin.end(data)
  })
}

export interface FetchIndexOptions {
  /** `<baseUrl>/dists/<suite>` without a trailing slash. */
  distsUrl: string
  fetchIndex: IndexFetcher
  /** Largest compressed index to download. */
  maxBytes: number
  /** Largest decompressed index. */
  maxUnpackedBytes: number
  /** Path of `xz`, or undefined when `.xz` must not be used. */
  xzPath: string | undefined
  signal?: AbortSignal
}

export interface FetchedIndex {
  /** Decompressed bytes. */
  data: Buffer
  /** The Release entry the downloaded (compressed) bytes matched. */
  file: AptReleaseFile
}

/**
 * Downloads `<dir>/<name>` in the first listed compression that can be fetched (with
 * `Acquire-By-Hash`, from `by-hash/SHA256/<hex>` first), checks it against the Release and
 * decompresses it. A fetch error moves on to the next variant; a size or hash mismatch does
 * not (the mirror is serving something else than what was signed) → PSW_ERR_FEED_INDEX_HASH.
 * Release lists no variant → PSW_ERR_FEED_INVALID; none fetchable → the last PSW_ERR_FEED_FETCH.
 */
export async function fetchVerifiedIndex(
  release: AptRelease,
  dir: string,
  name: string,
  options: FetchIndexOptions,
): Promise<FetchedIndex> {
  const candidates = indexCandidates(release, dir, name, options.xzPath !== undefined)
  if (candidates.length === 0) {
    throw new UpstreamError('PSW_ERR_FEED_INVALID', `the signed Release lists no ${dir}/${name} index`)
  }
  let lastError: unknown
  for (const { file, compression } of candidates) {
    if (file.size > options.maxBytes) {
      lastError = new UpstreamError(
        'PSW_ERR_TOO_LARGE',
        `${file.path} is ${file.size} bytes, limit ${options.maxBytes}`,
      )
      continue
    }
    const paths = release.acquireByHash ? [`${dir}/by-hash/SHA256/${file.sha256}`, file.path] : [file.path]
    for (const path of paths) {
      let data: Buffer
      try {
        data = await options.fetchIndex(`${options.distsUrl}/${path}`, { maxBytes: file.size, signal: options.signal })
      } catch (err) {
        if (hasCode(err, 'PSW_ERR_TOO_LARGE')) {
          throw new UpstreamError(
            'PSW_ERR_FEED_INDEX_HASH',
            `${path} is longer than the ${file.size} bytes the signed Release says`,
            {
              cause: err,
            },
          )
        }
        if (!hasCode(err, 'PSW_ERR_FEED_FETCH')) throw err
        lastError = err
        continue
      }
      checkIndexBytes(data, file)
      const unpacked = await decompressIndex(data, compression, file.path, {
        maxBytes: options.maxUnpackedBytes,
        xzPath: options.xzPath,
        signal: options.signal,
      })
      return { data: unpacked, file }
    }
  }
  throw lastError
}
