import type { Static, TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { type ErrorCode, ValidationError } from '../errors.ts'

export interface Checker<T extends TSchema> {
  /** Returns the value typed, or throws ValidationError with `code` and the first few schema errors. */
  check(value: unknown, what?: string): Static<T>
  is(value: unknown): value is Static<T>
}

/** Compiles a TypeBox schema once; validation failures carry a stable error code. */
export function compileChecker<T extends TSchema>(schema: T, code: ErrorCode = 'PSW_ERR_SCHEMA'): Checker<T> {
  const compiled = TypeCompiler.Compile(schema)
  return {
    check(value, what = 'input') {
      if (compiled.Check(value)) return value
      const errors = [...compiled.Errors(value)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`)
      throw new ValidationError(code, `${what} does not match its schema: ${errors.join('; ')}`, {
        details: { errors },
      })
    },
    is(value): value is Static<T> {
      return compiled.Check(value)
    },
  }
}

/** Parses JSON text with a byte limit first; bad JSON is a schema error, not a crash. */
export function parseJsonLimited(text: string | Uint8Array, maxBytes: number, what: string): unknown {
  const size = typeof text === 'string' ? Buffer.byteLength(text) : text.byteLength
  if (size > maxBytes) {
    throw new ValidationError('PSW_ERR_TOO_LARGE', `${what} is ${size} bytes, limit ${maxBytes}`)
  }
  try {
    return JSON.parse(typeof text === 'string' ? text : Buffer.from(text).toString('utf8'))
  } catch (err) {
    throw new ValidationError('PSW_ERR_SCHEMA', `${what} is not valid JSON`, { cause: err })
  }
}
