import { type DestinationStream, type Logger, pino } from 'pino'

export type { Logger }

export interface LoggerOptions {
  level?: string
  /** Where log lines go; defaults to stderr so stdout stays free for command output. */
  destination?: DestinationStream
}

/** Paths that must never reach a log line. */
const REDACT = [
  'token',
  '*.token',
  'privateKey',
  '*.privateKey',
  'key',
  '*.key',
  'password',
  '*.password',
  'headers.authorization',
]

/**
 * Root logger of one program. Components take a child:
 * `log.child({ component: 'appliance:store' })`.
 */
export function createLogger(name: string, options: LoggerOptions = {}): Logger {
  const level = options.level ?? process.env.PATCHSWARM_LOG_LEVEL ?? 'info'
  return pino(
    { name, level, redact: { paths: REDACT, censor: '[redacted]' } },
    options.destination ?? pino.destination(2),
  )
}

/** A logger that drops everything (tests, library defaults). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
