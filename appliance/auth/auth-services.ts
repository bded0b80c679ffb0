import type { Clock } from '../../shared/clock.ts'
import type { Logger } from '../../shared/log.ts'
import type { StateDb } from '../../shared/store/state-db.ts'
import { ApiTokenStore } from './api-token-store.ts'
import { PasswordHasher } from './password.ts'
import { SessionStore, type SessionStoreOptions } from './session-store.ts'
import { Setup } from './setup.ts'
import { UserStore } from './user-store.ts'

/** Accounts, sessions, API tokens and first-run setup, over the appliance's state database. */
export interface AuthServices {
  hasher: PasswordHasher
  users: UserStore
  sessions: SessionStore
  apiTokens: ApiTokenStore
  setup: Setup
}

export function openAuthServices(
  components: { db: StateDb; clock: Clock; log: Logger },
  options: { sessions?: SessionStoreOptions } = {},
): AuthServices {
  const { db, clock, log } = components
  const hasher = new PasswordHasher()
  const users = new UserStore({ db, clock, hasher })
  return {
    hasher,
    users,
    sessions: new SessionStore({ db, clock, log: log.child({ component: 'appliance:sessions' }) }, options.sessions),
    apiTokens: new ApiTokenStore({ db, clock }),
    setup: new Setup({ db, clock, users }),
  }
}
