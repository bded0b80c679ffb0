import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import Fastify, { type FastifyInstance } from 'fastify'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { silentLogger } from '../../shared/log.ts'
import { installErrorHandler } from './error-handler.ts'
import { defaultUiDir, registerUiRoutes, UI_CSP } from './ui-routes.ts'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

describe('UI routes', () => {
  let dir: string
  let app: FastifyInstance

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'psw-ui-'))
    const ui = join(dir, 'ui')
    await mkdir(join(ui, 'sub'), { recursive: true })
    await writeFile(join(ui, 'index.html'), '<!doctype html><script type="module" src="/ui/main-ABCD1234.js"></script>')
    await writeFile(join(ui, 'main-ABCD1234.js'), 'console.log(1)')
    await writeFile(join(ui, 'main-ABCD1234.js.map'), '{}')
    await writeFile(join(ui, 'main-ABCD1234.css'), 'body{}')
    await writeFile(join(ui, 'logo.svg'), '<svg/>')
    await writeFile(join(ui, '.hidden.js'), 'HIDDEN-CONTENT')
    await writeFile(join(ui, 'sub', 'x.js'), 'NESTED-CONTENT')
    await writeFile(join(dir, 'secret.js'), 'SECRET')
    app = Fastify({ logger: false })
    installErrorHandler(app, silentLogger())
    registerUiRoutes(app, { dir: ui })
  })
  afterEach(async () => {
    await app.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('serves index.html at /: no-store, the CSP, HTML', async () => {
    const res = await app.inject({ method: 'GET', url: '/' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(res.headers['cache-control']).toBe('no-store')
    expect(res.headers['content-security-policy']).toBe(UI_CSP)
    expect(res.headers['x-content-type-options']).toBe('nosniff')
    expect(res.body).toContain('/ui/main-ABCD1234.js')
  })

  it('serves assets with their content type; hashed ones immutable, others revalidated', async () => {
    const js = await app.inject({ method: 'GET', url: '/ui/main-ABCD1234.js' })
    expect(js.statusCode).toBe(200)
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8')
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable')
    expect(js.body).toBe('console.log(1)')
    const css = await app.inject({ method: 'GET', url: '/ui/main-ABCD1234.css' })
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8')
    const map = await app.inject({ method: 'GET', url: '/ui/main-ABCD1234.js.map' })
    expect(map.headers['content-type']).toBe('application/json; charset=utf-8')
    const svg = await app.inject({ method: 'GET', url: '/ui/logo.svg' })
    expect(svg.headers['content-type']).toBe('image/svg+xml')
    expect(svg.headers['cache-control']).toBe('no-cache')
    const head = await app.inject({ method: 'HEAD', url: '/ui/main-ABCD1234.js' })
    expect(head.statusCode).toBe(200)
  })

  it('serves nothing outside dist/ui: traversal, dot files, subdirectories, unknown types', async () => {
    const urls = [
      '/ui/../secret.js',
      '/ui/..%2Fsecret.js',
      '/ui/%2e%2e%2fsecret.js',
      '/ui/%2E%2E/secret.js',
      '/ui/..%5Csecret.js',
      '/ui/....//secret.js',
      '/ui/sub/x.js',
      '/ui/sub%2Fx.js',
      '/ui/.hidden.js',
      '/ui/%00main-ABCD1234.js',
      '/ui/main-ABCD1234.js%00.css',
      '/ui/missing.js',
      '/ui/index',
      '/ui/',
      '/secret.js',
      '/ui//etc/passwd',
      '/ui/%2Fetc%2Fpasswd',
    ]
    for (const url of urls) {
      const res = await app.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(404)
      expect(res.body, url).not.toContain('SECRET')
      expect(res.body, url).not.toContain('NESTED-CONTENT')
      expect(res.body, url).not.toContain('HIDDEN-CONTENT')
    }
  })

  it('answers 503 with what to run when the UI is not built', async () => {
    const bare = Fastify({ logger: false })
    registerUiRoutes(bare, { dir: join(dir, 'nothing-here') })
    const res = await bare.inject({ method: 'GET', url: '/' })
    expect(res.statusCode).toBe(503)
    expect(res.body).toContain('npm run build:ui')
    await bare.close()
  })

  it('finds <repo>/dist/ui by default', () => {
    expect(defaultUiDir()).toBe(join(REPO, 'dist', 'ui'))
  })
})

describe('npm run build:ui', () => {
  it('bundles hashed assets, an index.html naming them, no inline code, under 100 KB gzipped', async () => {
    const { stderr } = await promisify(execFile)(process.execPath, [join(REPO, 'bin', 'build-ui.js')], { cwd: REPO })
    expect(stderr).toMatch(/built dist\/ui in \d+ ms/)
    const ui = join(REPO, 'dist', 'ui')
    const html = await readFile(join(ui, 'index.html'), 'utf8')
    const js = /src="\/ui\/(main-[A-Z0-9]{8}\.js)"/.exec(html)?.[1]
    const css = /href="\/ui\/(main-[A-Z0-9]{8}\.css)"/.exec(html)?.[1]
    expect(js).toBeDefined()
    expect(css).toBeDefined()
    // The CSP allows no inline script or style: none in the shell.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
    expect(html).not.toMatch(/<style|style=/)
    const files = await readdir(ui)
    expect(files).toContain(`${js}.map`)
    let gz = gzipSync(html).length
    for (const f of [js!, css!]) gz += gzipSync(await readFile(join(ui, f))).length
    expect(gz).toBeLessThan(100 * 1024)
    expect(await readFile(join(ui, js!), 'utf8')).toContain(`sourceMappingURL=${js}.map`)
  })
})
