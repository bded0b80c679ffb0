/**
 * Baseline for bench:transfer: a plain libp2p stream (tcp + noise + yamux, the same node
 * factory as the product) between two processes. `serve` sends N bytes on every stream;
 * `fetch ADDR PEER N` reads them and prints the throughput as JSON.
 */

import { silentLogger } from '../../shared/log.ts'
import { createP2PNode, createPrivateKey } from '../../shared/p2p/p2p-node.ts'
import { sendWithBackpressure } from '../../shared/protocol/byte-stream.ts'

const PROTOCOL = '/patchswarm-bench/raw/1.0.0'
const [mode, ...args] = process.argv.slice(2)
const node = await createP2PNode({
  privateKey: await createPrivateKey(),
  listen: ['/ip4/127.0.0.1/tcp/0'],
  isAllowed: () => true,
  log: silentLogger(),
})

if (mode === 'serve') {
  const bytes = Number(args[0])
  const block = new Uint8Array(1 << 20).fill(7)
  await node.handle(
    PROTOCOL,
    async (stream) => {
      for (let sent = 0; sent < bytes; sent += block.byteLength) {
        await sendWithBackpressure(stream, sent + block.byteLength <= bytes ? block : block.subarray(0, bytes - sent))
      }
      await stream.close()
    },
    { maxInboundStreams: 4 },
  )
  await node.start()
  process.stdout.write(`${JSON.stringify({ peerId: node.peerId, addrs: node.multiaddrs() })}\n`)
  process.stdin.resume()
  process.stdin.on('end', () => void node.stop().then(() => process.exit(0)))
} else if (mode === 'fetch') {
  const [peerId, addrsJson, bytesText] = args
  await node.start()
  const started = performance.now()
  const stream = await node.openStream(peerId!, JSON.parse(addrsJson!) as string[], PROTOCOL)
  let received = 0
  for await (const piece of stream) received += piece.byteLength
  const seconds = (performance.now() - started) / 1000
  await node.stop()
  if (received !== Number(bytesText)) throw new Error(`received ${received} of ${bytesText} bytes`)
  process.stdout.write(`${JSON.stringify({ bytes: received, seconds })}\n`)
  process.exit(0)
} else {
  process.stderr.write('usage: raw-libp2p-peer.ts serve BYTES | fetch PEER ADDRS_JSON BYTES\n')
  process.exit(2)
}
