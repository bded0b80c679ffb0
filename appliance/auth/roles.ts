import { Type } from '@sinclair/typebox'

/** Web UI and API roles, weakest first: each role may do what the ones before it may. */
export const ROLES = ['viewer', 'operator', 'admin'] as const
export type Role = (typeof ROLES)[number]

export const RoleSchema = Type.Union(ROLES.map((r) => Type.Literal(r)))

/** Whether `have` is at least `need`. */
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need)
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value)
}

export const USERNAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$'
const USERNAME_RE = new RegExp(USERNAME_PATTERN)

export function isUsername(value: unknown): value is string {
  return typeof value === 'string' && USERNAME_RE.test(value)
}

export const UsernameSchema = Type.String({ minLength: 1, maxLength: 64, pattern: USERNAME_PATTERN })
/** Length checked loosely here (bytes vs characters); the password rules check it exactly. */
export const PasswordSchema = Type.String({ minLength: 1, maxLength: 1024 })
