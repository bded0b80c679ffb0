/**
 * Web UI accounts in the state database under `user:<name>`. Views never carry the password
 * hash. Invariant: while any account exists, at least one enabled admin exists (the last one
 * cannot be removed, demoted or disabled).
 */
import type { Clock } from '../../shared/clock.ts'
import { StateError, ValidationError } from '../../shared/errors.ts'
import { Mutex } from '../../shared/store/mutex.ts'
import type { StateBatchOp, StateDb } from '../../shared/store/state-db.ts'
import { checkPasswordRules, type PasswordHasher } from './password.ts'
import { isRole, isUsername, type Role } from './roles.ts'

export const USER_PREFIX = 'user:'

interface StoredUser {
  username: string
  role: Role
  disabled: boolean
  passwordHash: string
  createdAt: string
  createdBy: string
  passwordChangedAt: string
  updatedAt?: string
}

/** An account as every API shows it: no hash. */
export interface UserView {
  username: string
  role: Role
  disabled: boolean
  createdAt: string
  createdBy: string
  passwordChangedAt: string
  updatedAt?: string
}

export interface UserUpdate {
  role?: Role
  password?: string
  disabled?: boolean
}

function view(u: StoredUser): UserView {
  const { passwordHash: _h, ...rest } = u
  return rest
}

function checkName(username: string): void {
  if (!isUsername(username)) {
    throw new ValidationError(
      'PSW_ERR_INVALID_ARGUMENT',
      'a user name is 1 to 64 characters of a-z, 0-9, ".", "_", "-", starting with a letter or digit',
    )
  }
}

export class UserStore {
  readonly #db: StateDb
  readonly #clock: Clock
  readonly #hasher: PasswordHasher
  readonly #lock = new Mutex()

  constructor(components: { db: StateDb; clock: Clock; hasher: PasswordHasher }) {
    this.#db = components.db
    this.#clock = components.clock
    this.#hasher = components.hasher
  }

  /** Runs `fn` holding the store's lock (creates and changes are serialised under it). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.#lock.runExclusive(fn)
  }

  async get(username: string): Promise<UserView | undefined> {
    const u = await this.#stored(username)
    return u && view(u)
  }

  async list(): Promise<UserView[]> {
    const out: UserView[] = []
    for await (const [, u] of this.#db.iterate<StoredUser>(USER_PREFIX)) out.push(view(u))
    return out
  }

  async any(): Promise<boolean> {
    for await (const _ of this.#db.iterate(USER_PREFIX, { limit: 1 })) return true
    return false
  }

  /**
   * Creates an account; PSW_ERR_CONFLICT if the name is taken. `options.extraOps` commit in
   * the same batch; `options.onlyFirst` refuses (PSW_ERR_CONFLICT) when any account exists.
   * Call it outside `exclusive` unless `options.locked`.
   */
  async create(
    input: { username: string; password: string; role: Role },
    by: string,
    options: { extraOps?: StateBatchOp[]; onlyFirst?: boolean; locked?: boolean } = {},
  ): Promise<UserView> {
    checkName(input.username)
    if (!isRole(input.role)) throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'unknown role')
    checkPasswordRules(input.password, input.username)
    const passwordHash = await this.#hasher.hash(input.password)
    const run = async () => {
      if (options.onlyFirst && (await this.any())) {
        throw new StateError('PSW_ERR_CONFLICT', 'the appliance is already set up')
      }
      if (await this.#stored(input.username)) {
        throw new StateError('PSW_ERR_CONFLICT', `user ${input.username} exists`)
      }
      const now = new Date(this.#clock.now()).toISOString()
      const user: StoredUser = {
        username: input.username,
        role: input.role,
        disabled: false,
        passwordHash,
        createdAt: now,
        createdBy: by,
        passwordChangedAt: now,
      }
      await this.#db.batch([
        { type: 'put', key: USER_PREFIX + input.username, value: user },
        ...(options.extraOps ?? []),
      ])
      return view(user)
    }
    return options.locked ? run() : this.exclusive(run)
  }

  /** Changes role, password or disabled flag; returns the account before and after. */
  async update(username: string, change: UserUpdate): Promise<{ before: UserView; after: UserView }> {
    if (change.role !== undefined && !isRole(change.role)) {
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', 'unknown role')
    }
    if (change.password !== undefined) checkPasswordRules(change.password, username)
    const passwordHash = change.password === undefined ? undefined : await this.#hasher.hash(change.password)
    return this.exclusive(async () => {
      const user = await this.#mustGet(username)
      const next: StoredUser = { ...user }
      if (change.role !== undefined) next.role = change.role
      if (change.disabled !== undefined) next.disabled = change.disabled
      const now = new Date(this.#clock.now()).toISOString()
      if (passwordHash !== undefined) {
        next.passwordHash = passwordHash
        next.passwordChangedAt = now
      }
      next.updatedAt = now
      if (isActiveAdmin(user) && !isActiveAdmin(next)) await this.#assertAnotherAdmin(username)
      await this.#db.put(USER_PREFIX + username, next)
      return { before: view(user), after: view(next) }
    })
  }

  async remove(username: string): Promise<UserView> {
    return this.exclusive(async () => {
      const user = await this.#mustGet(username)
      if (isActiveAdmin(user)) await this.#assertAnotherAdmin(username)
      await this.#db.del(USER_PREFIX + username)
      return view(user)
    })
  }

  /**
   * The account if `password` is its password and it is enabled; otherwise undefined, in
   * about the same time whether the account exists or not.
   */
  async authenticate(username: string, password: string): Promise<UserView | undefined> {
    const user = isUsername(username) ? await this.#stored(username) : undefined
    const ok = await this.#hasher.verify(user?.passwordHash, password)
    return ok && user && !user.disabled ? view(user) : undefined
  }

  async #stored(username: string): Promise<StoredUser | undefined> {
    if (!isUsername(username)) return undefined
    return this.#db.get<StoredUser>(USER_PREFIX + username)
  }

  async #mustGet(username: string): Promise<StoredUser> {
    const user = await this.#stored(username)
    if (!user) throw new StateError('PSW_ERR_NOT_FOUND', `no user ${username}`)
    return user
  }

  async #assertAnotherAdmin(username: string): Promise<void> {
    for await (const [, u] of this.#db.iterate<StoredUser>(USER_PREFIX)) {
      if (u.username !== username && isActiveAdmin(u)) return
    }
    throw new StateError('PSW_ERR_CONFLICT', 'the last enabled admin cannot be removed, demoted or disabled')
  }
}

function isActiveAdmin(u: StoredUser): boolean {
  return u.role === 'admin' && !u.disabled
}
