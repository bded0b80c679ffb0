import { Command, CommanderError, InvalidArgumentError } from 'commander'
import { isPswError } from '../errors.ts'

/** The `patchswarm` root command; each program adds its subcommands. */
export function createProgram(version: string): Command {
  return (
    new Command('patchswarm')
      .description('Patch distribution for branch offices: download once over the WAN, share over the LAN.')
      .version(version)
      // Options after a subcommand belong to it (`ingest --version 1.0` is the bundle's version).
      .enablePositionalOptions()
      .showHelpAfterError('(run with --help for usage)')
      .exitOverride()
  )
}

/** Runs the CLI; returns the process exit code (0 ok, 1 failed, 2 usage). */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv, { from: 'user' })
    return 0
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help'
        ? 0
        : 2
    }
    if (isPswError(err)) {
      process.stderr.write(`error ${err.code}: ${err.message}\n`)
      return err.code === 'PSW_ERR_USAGE' ? 2 : 1
    }
    process.stderr.write(`error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    return 1
  }
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

export function parseIntOption(name: string) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`)
    return n
  }
}

/** Waits for SIGINT or SIGTERM. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on)
      process.off('SIGTERM', on)
      resolve(sig)
    }
    process.on('SIGINT', on)
    process.on('SIGTERM', on)
  })
}
