#!/usr/bin/env node
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
// Runs a TypeScript entry file (benchmarks, helpers) with the polyfill loaded first.
import { register } from 'tsx/esm/api'

register()
await import('../shared/polyfill.ts')
const [entry, ...rest] = process.argv.slice(2)
if (!entry) {
  process.stderr.write('usage: run-ts.js FILE.ts [args...]\n')
  process.exit(2)
}
process.argv = [process.argv[0], resolve(entry), ...rest]
await import(pathToFileURL(resolve(entry)).href)
