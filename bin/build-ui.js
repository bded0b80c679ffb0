// Bundles the web UI (appliance/ui/main.tsx and its CSS, Preact + @preact/signals) with
// esbuild into dist/ui/: main-<hash>.js, main-<hash>.css (minified, linked sourcemaps) and an
// index.html naming them, so the assets can be cached as immutable and index.html never is.
// `npm run build:ui` runs it; so do `npm start` (prestart) and the launcher before
// `appliance start` when the build is missing or older than the sources (isUiStale).
//
// Several processes may build at once (tests): esbuild's output is deterministic, each file
// is written to a temporary name and renamed into place, index.html last, so a reader sees
// either the old or the new index.html and every file it names.
import { existsSync, readdirSync, statSync } from 'node:fs'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..')
const SRC = join(REPO, 'appliance', 'ui')
export const UI_DIST = join(REPO, 'dist', 'ui')
const INDEX = join(UI_DIST, 'index.html')
const KEEP_OLD_ASSETS_MS = 3_600_000

function newestSource(dir, newest = 0) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = newestSource(path, newest)
    else if (!/\.test\.tsx?$/.test(entry.name)) newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/** True when there is no build or it is older than a source file (or this script). */
export function isUiStale() {
  if (!existsSync(SRC)) return false
  if (!existsSync(INDEX)) return true
  const built = statSync(INDEX).mtimeMs
  return newestSource(SRC) > built || statSync(fileURLToPath(import.meta.url)).mtimeMs > built
}

async function writeAtomic(path, contents) {
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, contents)
  await rename(tmp, path)
}

/** Builds dist/ui/; returns the files written with their sizes. */
export async function buildUi() {
  const esbuild = await import('esbuild')
  const result = await esbuild.build({
    entryPoints: [join(SRC, 'main.tsx')],
    entryNames: '[name]-[hash]',
    outdir: UI_DIST,
    // Written below, atomically, rather than by esbuild.
    write: false,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome115', 'firefox115', 'safari16'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    tsconfig: join(SRC, 'tsconfig.json'),
    minify: true,
    sourcemap: 'linked',
    legalComments: 'none',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  })
  await mkdir(UI_DIST, { recursive: true })
  const names = result.outputFiles.map((f) => basename(f.path))
  const js = names.find((n) => n.endsWith('.js'))
  const css = names.find((n) => n.endsWith('.css'))
  if (!js || !css) throw new Error(`the UI build made no ${js ? 'CSS' : 'JavaScript'}`)
  for (const f of result.outputFiles) await writeAtomic(f.path, f.contents)
  const template = await readFile(join(SRC, 'index.html'), 'utf8')
  const html = template.replaceAll('/ui/main.css', `/ui/${css}`).replaceAll('/ui/main.js', `/ui/${js}`)
  await writeAtomic(INDEX, html)
  // Assets of earlier builds stay an hour (a tab may still load them), then go.
  const keep = new Set([...names, 'index.html'])
  for (const old of readdirSync(UI_DIST)) {
    if (keep.has(old)) continue
    const path = join(UI_DIST, old)
    if (Date.now() - statSync(path).mtimeMs > KEEP_OLD_ASSETS_MS) await rm(path, { force: true })
  }
  return [
    ...result.outputFiles.map((f) => ({ file: basename(f.path), bytes: f.contents.length })),
    { file: 'index.html', bytes: html.length },
  ]
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const t0 = Date.now()
  const files = await buildUi()
  const { gzipSync } = await import('node:zlib')
  let gz = 0
  for (const { file } of files) {
    if (file.endsWith('.map')) continue
    gz += gzipSync(await readFile(join(UI_DIST, file))).length
  }
  for (const f of files) process.stderr.write(`  dist/ui/${f.file}  ${f.bytes} bytes\n`)
  process.stderr.write(`built dist/ui in ${Date.now() - t0} ms, ${gz} bytes gzipped (without sourcemaps)\n`)
}
