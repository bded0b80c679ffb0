import { existsSync } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply } from 'fastify'

/** The CSP of docs/web-ui.md: the app loads only its own external script and stylesheet. */
export const UI_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
}

/** dist/ui is flat: a file name, no directories, no dot files, a known extension. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.(html|js|css|map|svg|png|ico|woff2)$/
/** esbuild's `[name]-[hash]`: the content never changes under this name. */
const HASHED = /-[A-Z0-9]{8}\.(js|css)(\.map)?$/

/**
 * Where `npm run build:ui` (bin/build-ui.js) puts the bundle: `<repo>/dist/ui`, found from
 * this module whether it runs from the sources or from the CLI bundle in `<repo>/dist/cli-*`.
 * `PATCHSWARM_UI_DIR` overrides it.
 */
export function defaultUiDir(): string {
  if (process.env.PATCHSWARM_UI_DIR) return process.env.PATCHSWARM_UI_DIR
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'ui')
    const up = dirname(dir)
    if (up === dir) return join(process.cwd(), 'dist', 'ui')
    dir = up
  }
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
}

/**
 * The web UI: `/` is the app's index.html (never cached: it names the current assets), and
 * `/ui/<file>` the bundle's files (immutable when their name carries a content hash). Only
 * files directly in `dir` are served; the shell is public (it holds no data: every API call
 * it makes is authenticated by the API).
 */
export function registerUiRoutes(app: FastifyInstance, options: { dir?: string } = {}): void {
  const dir = resolve(options.dir ?? defaultUiDir())

  app.get('/', { schema: { hide: true } }, async (_request, reply) => {
    securityHeaders(reply).header('cache-control', 'no-store').header('content-security-policy', UI_CSP)
    let html: Buffer
    try {
      html = await readFile(join(dir, 'index.html'))
    } catch {
      return reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .send(`The web UI is not built (no ${join(dir, 'index.html')}): run npm run build:ui.\n`)
    }
    return reply.type(TYPES['.html']!).send(html)
  })

  app.get<{ Params: { file: string } }>('/ui/:file', { schema: { hide: true } }, async (request, reply) => {
    const { file } = request.params
    const ext = /\.[a-z0-9]+$/.exec(file)?.[0] ?? ''
    const type = TYPES[ext]
    const path = join(dir, file)
    const notFound = () =>
      reply.code(404).send({ code: 'PSW_ERR_NOT_FOUND', message: `no UI file ${JSON.stringify(file)}` })
    if (!ASSET_NAME.test(file) || file.includes('..') || !type || dirname(path) !== dir) return notFound()
    try {
      if (!(await stat(path)).isFile()) return notFound()
    } catch {
      return notFound()
    }
    securityHeaders(reply).header(
      'cache-control',
      HASHED.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
    )
    if (ext === '.html') reply.header('content-security-policy', UI_CSP)
    return reply.type(type).send(await readFile(path))
  })
}
