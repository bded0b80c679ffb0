#!/usr/bin/env node
// The patchswarm CLI. Sources are TypeScript run through tsx; the polyfill loads first.
import { register } from 'tsx/esm/api'

register()
await import('../shared/polyfill.ts')
const { main } = await import('../shared/cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
