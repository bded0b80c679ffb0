#!/usr/bin/env node
// The patchswarm CLI. Sources are TypeScript run through tsx; the polyfill loads first.
import { register } from 'tsx/esm/api'

register()
await import('../shared/polyfill.ts')
const { createProgram, runProgram } = await import('../shared/cli/program.ts')
const { registerApplianceCommands } = await import('../appliance/cli/commands.ts')
const { registerAgentCommands } = await import('../agent/cli/commands.ts')
const program = createProgram('0.1.0')
registerApplianceCommands(program)
registerAgentCommands(program)
process.exitCode = await runProgram(program, process.argv.slice(2))
