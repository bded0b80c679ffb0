import type { Logger } from 'pino'
import { isPswError, ProtocolError } from '../errors.ts'
import { silentLogger } from '../log.ts'
import type { TokenBucket } from '../rate/token-bucket.ts'
import { type UploadRequest, UploadScheduler, type UploadSchedulerOptions } from '../swarm/upload-scheduler.ts'
import { type ByteStream, sendKeepingQueued } from './byte-stream.ts'
import { ChunkErrorReason, ClientMessageDecoder, encodeDataHeader, encodeError } from './chunk-codec.ts'

/** Where an uploader gets chunk bytes: a content store, a download in progress, … */
export interface UploadSource {
  /** The chunk's bytes (already verified against `hashHex`), or undefined when not held. */
  read(hashHex: string, length: number): Promise<Uint8Array | undefined>
}

export interface ChunkUploaderOptions {
  source: UploadSource
  /** Upload rate cap shared by every stream (0 = unlimited). */
  rateLimit?: TokenBucket
  /** Upload slots, queue sizes, and the super-seeding priority (appliance). */
  scheduler: Omit<UploadSchedulerOptions, 'now'>
  now: () => number
  log?: Logger
  /** Called when a chunk is chosen to be sent (super-seeding bookkeeping). */
  onSending?: (peer: string, hashHex: string) => void
  /** Called after each chunk sent (transfer accounting). */
  onServed?: (peer: string, hashHex: string, bytes: number) => void
}

/** A body must be on its way within this time once sending starts (a peer that stops reading). */
export function sendTimeoutMs(length: number): number {
  return 30_000 + Math.ceil((8000 * length) / 1_000_000)
}

interface Served {
  stream: ByteStream
  peer: string
  /** Largest chunk this peer asked for: bounds what may sit in its write buffer. */
  largest: number
}

/**
 * The serving side of the chunk protocol for many peers at once (agents and the appliance).
 * Requests from all streams go through one UploadScheduler: a bounded queue, a cap on
 * chunks being sent at once (upload slots), one rate limit, answers in the scheduler's
 * order (each carries its request id, so a stream's answers may come out of order). A full
 * queue is answered BUSY, super-seeding refusals ELSEWHERE, so the peer asks someone else.
 */
export class ChunkUploader {
  readonly #options: ChunkUploaderOptions
  readonly #scheduler: UploadScheduler
  readonly #streams = new Map<number, Served>()
  readonly #log: Logger
  #nextStream = 1
  #stopped = false
  bytesServed = 0

  constructor(options: ChunkUploaderOptions) {
    this.#options = options
    this.#log = options.log ?? silentLogger()
    this.#scheduler = new UploadScheduler({ ...options.scheduler, now: options.now })
  }

  get activeStreams(): number {
    return this.#streams.size
  }

  /** Serves one inbound chunk stream until the peer closes it. */
  async serve(stream: ByteStream, peer: string): Promise<void> {
    if (this.#stopped) {
      stream.abort(new ProtocolError('PSW_ERR_PROTOCOL', 'uploader stopped'))
      return
    }
    const key = this.#nextStream++
    const served: Served = { stream, peer, largest: 0 }
    this.#streams.set(key, served)
    const decoder = new ClientMessageDecoder()
    try {
      for await (const data of stream) {
        for (const msg of decoder.push(data)) {
          // A peer that keeps asking while not reading our answers would grow our write
          // buffer without end (faults row 10): past the cap, the stream is reset.
          if (stream.writeBufferLength > 2 * served.largest + 64 * 1024) {
            throw new ProtocolError('PSW_ERR_PROTOCOL', 'peer does not read its answers; stream reset')
          }
          if (msg.type === 'cancel') {
            // Queued: dropped and answered CANCELLED. Being sent: it arrives anyway.
            if (this.#scheduler.cancel(key, msg.id)) stream.send(encodeError(msg.id, ChunkErrorReason.CANCELLED))
            continue
          }
          const request: UploadRequest = {
            stream: key,
            peer,
            id: msg.request.id,
            hash: Buffer.from(msg.request.hash).toString('hex'),
            length: msg.request.length,
          }
          const admission = this.#scheduler.admit(request)
          if (!admission.admitted) {
            const reason = admission.reason === 'busy' ? ChunkErrorReason.BUSY : ChunkErrorReason.ELSEWHERE
            stream.send(encodeError(request.id, reason))
            continue
          }
          served.largest = Math.max(served.largest, request.length)
          if (admission.refused) this.#refuse(admission.refused, ChunkErrorReason.ELSEWHERE)
        }
        this.#pump()
      }
    } catch (err) {
      this.#log.debug({ peer, code: isPswError(err) ? err.code : undefined, err }, 'chunk stream reader stopped')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      this.#scheduler.dropStream(key)
      this.#streams.delete(key)
      this.#pump()
    }
    if (stream.status === 'open') await stream.close().catch(() => {})
  }

  stop(): void {
    this.#stopped = true
    for (const { stream } of this.#streams.values())
      stream.abort(new ProtocolError('PSW_ERR_PROTOCOL', 'shutting down'))
  }

  #refuse(request: UploadRequest, reason: (typeof ChunkErrorReason)[keyof typeof ChunkErrorReason]): void {
    const s = this.#streams.get(request.stream)
    if (s?.stream.status === 'open') s.stream.send(encodeError(request.id, reason))
  }

  #pump(): void {
    for (;;) {
      const refused: UploadRequest[] = []
      const request = this.#scheduler.next(refused)
      for (const r of refused) this.#refuse(r, ChunkErrorReason.ELSEWHERE)
      if (!request) return
      this.#send(request).finally(() => {
        this.#scheduler.done(request)
        this.#pump()
      })
    }
  }

  async #send(request: UploadRequest): Promise<void> {
    const served = this.#streams.get(request.stream)
    if (!served) return
    const { stream } = served
    let timer: NodeJS.Timeout | undefined
    this.#options.onSending?.(served.peer, request.hash)
    try {
      await this.#options.rateLimit?.take(request.length)
      if (stream.status !== 'open') return
      const data = await this.#options.source.read(request.hash, request.length).catch((err) => {
        this.#log.warn({ err, hash: request.hash.slice(0, 12) }, 'reading chunk failed')
        return undefined
      })
      if (stream.status !== 'open') return
      if (data === undefined || data.byteLength !== request.length) {
        stream.send(encodeError(request.id, ChunkErrorReason.NOT_FOUND))
        return
      }
      timer = setTimeout(
        () => stream.abort(new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'peer stopped reading a chunk')),
        sendTimeoutMs(request.length),
      )
      stream.send(encodeDataHeader(request.id, data.byteLength))
      // Return once at most one chunk is queued, so the next can follow without a gap.
      await sendKeepingQueued(stream, data, data.byteLength)
      this.bytesServed += data.byteLength
      this.#options.onServed?.(served.peer, request.hash, data.byteLength)
    } catch (err) {
      this.#log.debug({ err, peer: served.peer }, 'sending a chunk failed')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      clearTimeout(timer)
    }
  }
}
