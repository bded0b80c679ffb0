/**
 * The admin ingest route over a real connection (127.0.0.1, port 0): `inject()` cannot show
 * how the request and response of a real socket close. The client is node:http, so the test
 * controls exactly when the connection goes away.
 */
import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { type IncomingMessage, request } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { readAdminToken } from '../data-dir.ts'
import { openTestAppliance, type TestAppliance, writeSource } from '../test-fixtures.ts'
import { createHttpServer } from './server.ts'

interface Line {
  type: string
  phase?: string
  done?: number
  total?: number
  record?: { name: string }
  error?: { code: string }
}

describe('POST /api/v1/admin/ingest over a real connection', () => {
  let t: TestAppliance
  let app: FastifyInstance
  let port: number
  let adminToken: string

  beforeEach(async () => {
    t = await openTestAppliance()
    adminToken = await readAdminToken(t.core.layout)
    app = await createHttpServer({
      core: t.core,
      adminToken,
      status: async () => {
        throw new Error('not used')
      },
      startedAt: Date.now(),
      log: silentLogger(),
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    port = (app.server.address() as { port: number }).port
  })
  afterEach(async () => {
    await app.close()
    await t.cleanup()
  })

  /** Starts the ingest; `onLine` gets each NDJSON line and may return false to hang up. */
  const ingestOverHttp = (body: unknown, onLine: (line: Line) => boolean = () => true) =>
    new Promise<{ res: IncomingMessage; lines: Line[]; hungUp: boolean }>((resolve, reject) => {
      const lines: Line[] = []
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/api/v1/admin/ingest',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        },
        (res) => {
          let buffered = ''
          res.setEncoding('utf8')
          res.on('data', (text: string) => {
            buffered += text
            for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
              const line = JSON.parse(buffered.slice(0, nl)) as Line
              buffered = buffered.slice(nl + 1)
              lines.push(line)
              if (!onLine(line)) {
                req.destroy()
                resolve({ res, lines, hungUp: true })
                return
              }
            }
          })
          res.on('end', () => resolve({ res, lines, hungUp: false }))
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      req.end(JSON.stringify(body))
    })

  // Regression: the route aborted on the request's 'close', which Node emits as soon as the
  // request body has been read, so every ingest through the API ended in PSW_ERR_INTERNAL.
  it('completes and ends with a result line', async () => {
    const source = await writeSource(t.dir, 'tool.bin', Buffer.alloc(3 << 20, 1))
    const { res, lines } = await ingestOverHttp({ source, name: 'tool', version: '1', targetRoot: '/opt/tool' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/)
    expect(lines.at(-1), JSON.stringify(lines.at(-1))).toMatchObject({ type: 'result', record: { name: 'tool' } })
    expect((await t.core.catalog.list()).map((b) => b.name)).toEqual(['tool'])
  })

  it('a missing source ends with an error line over a real connection too', async () => {
    const { lines } = await ingestOverHttp({ source: `${t.dir}/nope`, name: 'x', version: '1', targetRoot: '/opt' })
    expect(lines.at(-1)).toMatchObject({ type: 'error', error: { code: 'PSW_ERR_INGEST_SOURCE' } })
  })

  it('a client that hangs up mid-ingest aborts it: nothing recorded, no temp file left', async (ctx) => {
    // Unique content in small chunks so the store phase (one durable file per chunk) takes a while.
    const source = await writeSource(t.dir, 'big.bin', randomBytes(48 << 20))
    const { lines, hungUp } = await ingestOverHttp(
      { source, name: 'big', version: '1', targetRoot: '/opt/big', chunkSize: 65536 },
      // Hang up during the store phase. (Hanging up during the pack phase crashes the process
      // in shared/bundle/bundle-writer.ts: see the report that came with this test.)
      (line) => !(line.type === 'progress' && line.phase === 'store' && line.done! < line.total!),
    )
    ctx.skip(!hungUp, `the store phase finished before a progress line came (${lines.length} lines); nothing to abort`)

    // Once the ingest has settled its temp tar is gone; had it not been aborted, it would be in the catalog.
    await vi.waitFor(
      async () => expect((await readdir(t.core.layout.tmp)).filter((f) => f.startsWith('ingest-'))).toEqual([]),
      { timeout: 30_000, interval: 50 },
    )
    expect(await t.core.catalog.list()).toEqual([])
  })
})
