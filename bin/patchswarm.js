#!/usr/bin/env -S node --max-semi-space-size=1
// A 1 MiB young generation makes V8 collect the wrappers of network buffers (noise frames,
// chunk buffers) sooner, so their memory outside the heap is returned sooner: about 30 MB
// less peak RSS during a download at the same speed (docs/benchmarks.md). `npm start` and
// the tests pass the same flag.
//
// The patchswarm CLI launcher: runs the bundled CLI in dist/, (re)building it first
// when it is missing or older than the sources, so a fresh clone needs no build step
// (and, before `appliance start`, the web UI's bundle: bin/build-ui.js).
import { pathToFileURL } from 'node:url'
import { build, entryPath, isStale } from './build.js'

if (isStale()) await build()
// The web UI's bundle (dist/ui) too, for the command that serves it.
if (process.argv[2] === 'appliance' && process.argv[3] === 'start') {
  const ui = await import('./build-ui.js')
  if (ui.isUiStale()) await ui.buildUi()
}
await import(pathToFileURL(entryPath()).href)
