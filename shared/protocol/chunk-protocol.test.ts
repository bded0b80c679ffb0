import { randomBytes } from 'node:crypto'
import { afterEach, describe, expect, it } from 'vitest'
import { sha256Hex } from '../content/chunking.ts'
import { silentLogger } from '../log.ts'
import { createP2PNode, createPrivateKey, type P2PNode } from '../p2p/p2p-node.ts'
import { type ByteStream, sendWithBackpressure } from './byte-stream.ts'
import { ChunkClient } from './chunk-client.ts'
import { CHUNK_PROTOCOL, encodeDataHeader, encodeRequest } from './chunk-codec.ts'
import { serveChunkStream } from './chunk-server.ts'

const nodes: P2PNode[] = []
afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()))
})

async function pair(allowClient = true): Promise<{ server: P2PNode; client: P2PNode }> {
  const members = new Set<string>()
  const log = silentLogger()
  const server = await createP2PNode({
    privateKey: await createPrivateKey(),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    isAllowed: (p) => members.has(p),
    log,
  })
  const client = await createP2PNode({
    privateKey: await createPrivateKey(),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    isAllowed: (p) => p === server.peerId,
    log,
  })
  if (allowClient) members.add(client.peerId)
  nodes.push(server, client)
  await server.start()
  await client.start()
  return { server, client }
}

describe('chunk protocol over libp2p (tcp + noise + yamux on 127.0.0.1)', () => {
  it('serves pipelined requests and verifies each chunk', async () => {
    const chunks = new Map<string, Uint8Array>()
    const list = Array.from({ length: 12 }, () => randomBytes(65536))
    for (const c of list) chunks.set(sha256Hex(c), c)
    const { server, client } = await pair()
    await server.handle(
      CHUNK_PROTOCOL,
      (stream) => serveChunkStream(stream, { source: { read: async (h) => chunks.get(h) } }),
      { maxInboundStreams: 4 },
    )
    const stream = await client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL)
    const cc = new ChunkClient(stream)
    const got = await Promise.all(list.map((c) => cc.fetch(sha256Hex(c), c.length)))
    for (const [i, g] of got.entries()) expect(Buffer.from(g).equals(list[i]!)).toBe(true)
    await expect(cc.fetch('00'.repeat(32), 100)).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_UNAVAILABLE' })
    await cc.close()
  })

  it('rejects a chunk whose bytes do not match the requested hash', async () => {
    const good = randomBytes(65536)
    const { server, client } = await pair()
    await server.handle(
      CHUNK_PROTOCOL,
      (stream) => serveChunkStream(stream, { source: { read: async () => randomBytes(65536) } }),
      { maxInboundStreams: 4 },
    )
    const cc = new ChunkClient(await client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL))
    await expect(cc.fetch(sha256Hex(good), good.length)).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_HASH' })
    await cc.close()
  })

  it('aborts at the limit when a peer answers with more bytes than requested (endless data)', async () => {
    const { server, client } = await pair()
    let sent = 0
    await server.handle(
      CHUNK_PROTOCOL,
      async (stream: ByteStream) => {
        for await (const _ of stream) {
          // a malicious server: claims 16 MiB for a 64 KiB request and starts streaming
          stream.send(encodeDataHeader(1, 16 << 20))
          for (let i = 0; i < 256 && stream.status === 'open'; i++) {
            await sendWithBackpressure(stream, new Uint8Array(65536)).catch(() => {})
            sent += 65536
          }
          return
        }
      },
      { maxInboundStreams: 4 },
    )
    const cc = new ChunkClient(await client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL))
    await expect(cc.fetch('11'.repeat(32), 65536)).rejects.toMatchObject({ code: 'PSW_ERR_CHUNK_SIZE' })
    await cc.done
    expect(sent).toBeLessThan(16 << 20)
  })

  it('refuses a peer that is not a member before any protocol stream', async () => {
    const { server, client } = await pair(false)
    let handled = 0
    await server.handle(
      CHUNK_PROTOCOL,
      async () => {
        handled++
      },
      { maxInboundStreams: 4 },
    )
    await expect(client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL)).rejects.toThrow()
    expect(handled).toBe(0)
    expect(server.connectedPeers()).not.toContain(client.peerId)
  })

  it('rejects malformed requests by closing the stream', async () => {
    const { server, client } = await pair()
    await server.handle(
      CHUNK_PROTOCOL,
      (stream) => serveChunkStream(stream, { source: { read: async () => undefined } }),
      { maxInboundStreams: 4 },
    )
    const stream = await client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL)
    stream.send(encodeRequest({ id: 1, hash: new Uint8Array(32), length: 0x7fff_ffff }))
    const received: number[] = []
    await expect(
      (async () => {
        for await (const d of stream) received.push(d.byteLength)
      })(),
    ).rejects.toThrow()
    expect(received).toEqual([])
  })
})

describe('chunk server under a request flood (faults row 10)', () => {
  it('resets a stream whose peer keeps asking without reading, and keeps serving others', async () => {
    const { server, client } = await pair()
    const chunk = randomBytes(65536)
    let handlerEnded = false
    await server.handle(
      CHUNK_PROTOCOL,
      (stream) =>
        serveChunkStream(stream, {
          source: { read: async (h) => (h === sha256Hex(chunk) ? chunk : undefined) },
        }).finally(() => {
          handlerEnded = true
        }),
      { maxInboundStreams: 4 },
    )
    const flood = await client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL)
    // Paused: yamux stops granting the server send window, so its answers pile up on its side.
    ;(flood as unknown as { pause(): void }).pause()
    // Never reads its answers: up to 2 000 000 requests for a chunk the server does not have,
    // 1 000 per write. Their 6-byte answers soon fill our 4 MiB receive window, and then the
    // server's write buffer: the server must reset the stream instead of buffering on.
    const batch = Buffer.concat(
      Array.from({ length: 1000 }, (_, i) => encodeRequest({ id: i + 1, hash: new Uint8Array(32), length: 65536 })),
    )
    let sent = 0
    try {
      for (; sent < 2000 && flood.status === 'open'; sent++) await sendWithBackpressure(flood, batch)
    } catch {
      // the reset reaches us while sending
    }
    expect(sent).toBeLessThan(2000)
    await expect.poll(() => handlerEnded, { timeout: 10_000 }).toBe(true)
    // a well-behaved stream on the same connection is still served
    const cc = new ChunkClient(await client.openStream(server.peerId, server.multiaddrs(), CHUNK_PROTOCOL))
    expect(Buffer.from(await cc.fetch(sha256Hex(chunk), chunk.length)).equals(chunk)).toBe(true)
    await cc.close()
  })
})
