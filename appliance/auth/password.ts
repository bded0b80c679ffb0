/**
 * Password hashing for web UI accounts: argon2id with the OWASP parameters (m = 19 MiB,
 * t = 2, p = 1). At most two hashes run at once (each takes ~19 MiB and a thread of the
 * libuv pool); an unknown user is verified against a dummy hash so that a login takes the
 * same time whether the account exists or not.
 */
import { hash, verify } from '@node-rs/argon2'
import { ValidationError } from '../../shared/errors.ts'

// Not `Algorithm.Argon2id`: a const enum cannot be imported under verbatimModuleSyntax, and
// argon2id is the library's default.
const OPTIONS = { memoryCost: 19456, timeCost: 2, parallelism: 1 } as const

export const PASSWORD_MIN = 12
export const PASSWORD_MAX = 256

/** A counting semaphore: `run` waits for one of `size` slots. */
export class Semaphore {
  #free: number
  readonly #waiting: Array<() => void> = []
  constructor(size: number) {
    this.#free = size
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--
    else await new Promise<void>((resolve) => this.#waiting.push(resolve))
    try {
      return await fn()
    } finally {
      const next = this.#waiting.shift()
      if (next) next()
      else this.#free++
    }
  }
}

/** Refuses a password outside 12..256 characters or equal to the user name (any case). */
export function checkPasswordRules(password: string, username: string): void {
  const length = [...password].length
  if (length < PASSWORD_MIN || length > PASSWORD_MAX) {
    throw new ValidationError(
      'PSW_ERR_INVALID_ARGUMENT',
      `a password has ${PASSWORD_MIN} to ${PASSWORD_MAX} characters`,
    )
  }
  if (password.toLowerCase() === username.toLowerCase()) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'the password must not be the user name')
  }
}

export class PasswordHasher {
  readonly #slots: Semaphore
  #dummy: Promise<string> | undefined

  constructor(options: { concurrency?: number } = {}) {
    this.#slots = new Semaphore(options.concurrency ?? 2)
  }

  /** An argon2id PHC string of `password`. */
  hash(password: string): Promise<string> {
    return this.#slots.run(() => hash(password, OPTIONS))
  }

  /**
   * Whether `password` matches `stored`; with no `stored` (an unknown user) verifies against
   * a dummy hash and returns false, taking the same time. A malformed hash is a mismatch.
   */
  async verify(stored: string | undefined, password: string): Promise<boolean> {
    const target = stored ?? (await this.#dummyHash())
    const ok = await this.#slots.run(() => verify(target, password).catch(() => false))
    return stored !== undefined && ok
  }

  #dummyHash(): Promise<string> {
    this.#dummy ??= this.hash(`dummy-${Math.random()}-${Date.now()}`)
    return this.#dummy
  }
}
