#!/usr/bin/env node
// The patchswarm CLI launcher: runs the bundled dist/patchswarm.mjs, (re)building it first
// when it is missing or older than the sources, so a fresh clone needs no build step.
import { pathToFileURL } from 'node:url'
import { build, DIST, isStale } from './build.js'

if (isStale()) await build()
await import(pathToFileURL(DIST).href)
