import { readFile } from 'node:fs/promises'
import type { TSchema } from '@sinclair/typebox'
import { StoreError } from '../errors.ts'
import { type Checker, parseJsonLimited } from '../metadata/schema-check.ts'
import { writeFileDurable } from './durable-file.ts'

const MAX_CONFIG_BYTES = 64 << 10

/**
 * Reads a JSON config file, validated by `checker`. A missing or unreadable file is
 * PSW_ERR_DATA_DIR with `missingHint` (what the operator should run); bad content is a
 * schema error naming the file.
 */
export async function readConfigFile<T extends TSchema>(path: string, checker: Checker<T>, missingHint: string) {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new StoreError('PSW_ERR_DATA_DIR', missingHint, { cause: err })
  }
  return checker.check(parseJsonLimited(text, MAX_CONFIG_BYTES, path), path)
}

/** Validates and writes a JSON config file durably (tmp → fsync → rename). */
export async function writeConfigFile<T extends TSchema>(path: string, checker: Checker<T>, value: unknown) {
  checker.check(value, path)
  await writeFileDurable(path, `${JSON.stringify(value, null, 2)}\n`)
}
