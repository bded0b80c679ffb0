// Entry of the patchswarm CLI (bundled to dist/patchswarm.mjs by bin/build.js).
import '../shared/polyfill.ts'
import { registerAgentCommands } from '../agent/cli/commands.ts'
import { registerApplianceCommands } from '../appliance/cli/commands.ts'
import { createProgram, runProgram } from '../shared/cli/program.ts'

const program = createProgram('0.1.0')
registerApplianceCommands(program)
registerAgentCommands(program)
process.exitCode = await runProgram(program, process.argv.slice(2))
