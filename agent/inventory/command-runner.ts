import { spawn } from 'node:child_process'
import { PswError } from '../../shared/errors.ts'

export interface RunOptions {
  /** Stdout beyond this many bytes kills the command and fails the run. */
  maxBytes: number
  timeoutMs: number
  signal?: AbortSignal
}

/**
 * Runs a program (no shell) and returns its stdout as bytes; injected so parsers are tested
 * with fixture text and tests never depend on the machine's tools.
 */
export type CommandRunner = (command: string, args: readonly string[], options: RunOptions) => Promise<Uint8Array>

const inventoryError = (message: string, cause?: unknown) =>
  new PswError('PSW_ERR_INVENTORY_COMMAND', message, cause === undefined ? {} : { cause })

/**
 * The real runner: `spawn` without a shell, `LC_ALL=C` so tools do not translate their
 * messages, stdout capped at `maxBytes`, killed on timeout or abort. A non-zero exit status
 * fails with PSW_ERR_INVENTORY_COMMAND and the first line of stderr.
 */
export const runCommand: CommandRunner = (command, args, options) =>
  new Promise((resolve, reject) => {
    const signal = options.signal
      ? AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)])
      : AbortSignal.timeout(options.timeoutMs)
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C' },
      signal,
      windowsHide: true,
    })
    const chunks: Buffer[] = []
    let size = 0
    let stderr = ''
    let failure: Error | undefined
    child.stdout.on('data', (data: Buffer) => {
      size += data.byteLength
      if (size > options.maxBytes) {
        failure ??= inventoryError(`${command} printed more than ${options.maxBytes} bytes`)
        child.kill('SIGKILL')
        return
      }
      chunks.push(data)
    })
    child.stderr.on('data', (data: Buffer) => {
      if (stderr.length < 2000) stderr += data.toString('utf8')
    })
    child.on('error', (err) => {
      failure ??= inventoryError(
        signal.aborted ? `${command} timed out or was aborted` : `cannot run ${command}: ${err.message}`,
        err,
      )
      // A program that never started emits no 'close'.
      if (child.pid === undefined) reject(failure)
    })
    child.on('close', (code) => {
      if (failure) return reject(failure)
      if (code !== 0) {
        const line = stderr.trim().split('\n')[0]?.slice(0, 300) ?? ''
        return reject(inventoryError(`${command} exited with status ${code}${line ? `: ${line}` : ''}`))
      }
      resolve(Buffer.concat(chunks))
    })
  })
