import type { Uint8ArrayList } from 'uint8arraylist'

/**
 * The part of a libp2p Stream the protocols use. Declared here so protocol code does not
 * import libp2p (only each program's network module does) and tests can pass any duplex.
 */
export interface ByteStream extends AsyncIterable<Uint8Array | Uint8ArrayList> {
  send(data: Uint8Array | Uint8ArrayList): boolean
  close(options?: { signal?: AbortSignal }): Promise<void>
  abort(err: Error): void
  addEventListener(type: 'drain' | 'close', listener: () => void, options?: { once?: boolean }): void
  removeEventListener(type: 'drain' | 'close', listener: () => void): void
  readonly status: string
  /** Bytes queued in the stream, not yet handed to the connection. */
  readonly writeBufferLength: number
}

/** Resolves on the stream's next 'drain'; rejects if it closes first. */
function nextDrain(stream: ByteStream): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onDrain = () => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = () => {
      stream.removeEventListener('drain', onDrain)
      reject(new Error('stream closed while waiting for drain'))
    }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}

/**
 * Sends and, when the stream's write buffer is full, waits for its 'drain' event (not
 * onDrain(), which resolves too early in @libp2p/utils 7.4 — see docs/protocol.md).
 */
export async function sendWithBackpressure(stream: ByteStream, data: Uint8Array): Promise<void> {
  if (!stream.send(data)) await nextDrain(stream)
}

/**
 * Queues `data` and returns once at most `highWaterBytes` remain queued in the stream. Unlike
 * waiting for every send to drain, this keeps the next message queued behind the current
 * one, so the connection never idles between messages (a stop-and-wait gap per chunk).
 */
export async function sendKeepingQueued(stream: ByteStream, data: Uint8Array, highWaterBytes: number): Promise<void> {
  stream.send(data)
  while (stream.writeBufferLength > highWaterBytes) await nextDrain(stream)
}
