import type { Logger } from 'pino'
import { isPswError, ProtocolError } from '../errors.ts'
import { silentLogger } from '../log.ts'
import { type ByteStream, sendKeepingQueued } from './byte-stream.ts'
import {
  ChunkErrorReason,
  type ChunkRequest,
  ClientMessageDecoder,
  encodeDataHeader,
  encodeError,
} from './chunk-codec.ts'

/** Where a server gets chunk bytes: a content store, a partial download, … */
export interface ChunkSource {
  /** The chunk's bytes, or undefined when this node does not have it. */
  read(hashHex: string, length: number): Promise<Uint8Array | undefined>
}

export interface ChunkServerOptions {
  source: ChunkSource
  /** Requests a peer may queue on one stream; more are answered TOO_MANY_REQUESTS. */
  maxQueuedRequests?: number
  log?: Logger
  /** Called after each chunk sent (transfer accounting). */
  onServed?: (bytes: number) => void
}

interface Queued {
  request: ChunkRequest
  read?: Promise<Uint8Array | undefined>
}

/**
 * Serves one chunk-protocol stream until the peer closes its side. Requests are answered in
 * order; the next chunk is read from disk while the current one is being sent.
 */
export async function serveChunkStream(stream: ByteStream, options: ChunkServerOptions): Promise<void> {
  const log = options.log ?? silentLogger()
  const maxQueued = options.maxQueuedRequests ?? 64
  // Normal: the chunk on the wire, one queued behind it, and small answers. Anything beyond
  // two of the largest chunks asked for plus 64 KiB means the peer is not reading.
  let largest = 0
  const maxBufferedBytes = () => 2 * largest + 64 * 1024
  const decoder = new ClientMessageDecoder()
  const queue: Queued[] = []
  let readerDone = false
  let wake: (() => void) | undefined
  const notify = () => {
    wake?.()
    wake = undefined
  }

  const startRead = (q: Queued) => {
    q.read ??= options.source.read(Buffer.from(q.request.hash).toString('hex'), q.request.length).catch((err) => {
      log.warn({ err }, 'reading chunk failed')
      return undefined
    })
  }

  const reader = (async () => {
    try {
      for await (const data of stream) {
        for (const msg of decoder.push(data)) {
          // A peer that keeps sending while not reading our answers would grow our write
          // buffer without end (faults row 10): past the cap, the stream is reset.
          if (stream.writeBufferLength > maxBufferedBytes()) {
            throw new ProtocolError('PSW_ERR_PROTOCOL', 'peer does not read its answers; stream reset')
          }
          if (msg.type === 'cancel') {
            const i = queue.findIndex((q) => q.request.id === msg.id)
            // Index 0 may already be on the wire and is answered with its data.
            if (i > 0) {
              queue.splice(i, 1)
              stream.send(encodeError(msg.id, ChunkErrorReason.CANCELLED))
            }
          } else if (queue.length >= maxQueued) {
            stream.send(encodeError(msg.request.id, ChunkErrorReason.TOO_MANY_REQUESTS))
          } else {
            largest = Math.max(largest, msg.request.length)
            queue.push({ request: msg.request })
          }
        }
        notify()
      }
    } catch (err) {
      log.debug({ code: isPswError(err) ? err.code : undefined, err }, 'chunk stream reader stopped')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      readerDone = true
      notify()
    }
  })()

  try {
    while (true) {
      const head = queue[0]
      if (!head) {
        if (readerDone) break
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        continue
      }
      startRead(head)
      const next = queue[1]
      if (next) startRead(next)
      const data = await head.read
      if (queue[0] !== head) continue // cancelled meanwhile: never sent
      queue.shift()
      if (stream.status !== 'open') break
      if (data === undefined || data.byteLength !== head.request.length) {
        stream.send(encodeError(head.request.id, ChunkErrorReason.NOT_FOUND))
        continue
      }
      stream.send(encodeDataHeader(head.request.id, data.byteLength))
      // Keep about one more chunk queued so the connection never idles between chunks.
      await sendKeepingQueued(stream, data, data.byteLength)
      options.onServed?.(data.byteLength)
    }
    if (stream.status === 'open') await stream.close()
  } catch (err) {
    log.debug({ err }, 'chunk stream writer stopped')
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
  await reader
}
