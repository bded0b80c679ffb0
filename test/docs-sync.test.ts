import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../shared/errors.ts'
import { CLI_DOC, renderCliDoc } from './tools/gen-cli-doc.ts'
import { ERRORS_DOC, REPO, renderErrorsDoc } from './tools/gen-errors-doc.ts'

const SOURCE_DIRS = ['appliance', 'agent', 'shared']

/** Non-test TypeScript files under `dir`. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : sourceFiles(path)
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : []
  })
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

describe('docs stay in sync with the code', () => {
  it('docs/errors.md lists exactly the codes of ERROR_CODES', () => {
    expect(readOrEmpty(ERRORS_DOC), 'docs/errors.md is out of date: run `npm run docs:errors`').toBe(renderErrorsDoc())
  })

  it('every PSW_ERR_* string literal in the sources is a registered code', () => {
    const literal = /(['"`])(PSW_ERR_[A-Z0-9_]+)\1/g
    const unknown: string[] = []
    let seen = 0
    for (const file of SOURCE_DIRS.flatMap((d) => sourceFiles(join(REPO, d)))) {
      for (const [i, line] of readFileSync(file, 'utf8').split('\n').entries()) {
        for (const m of line.matchAll(literal)) {
          seen++
          if (!Object.hasOwn(ERROR_CODES, m[2]!)) unknown.push(`${relative(REPO, file)}:${i + 1}: ${m[2]}`)
        }
      }
    }
    expect(seen).toBeGreaterThan(50)
    expect(unknown, 'codes used in the sources but missing from ERROR_CODES in shared/errors.ts').toEqual([])
  })

  it('docs/cli.md matches the --help output of every command', () => {
    expect(readOrEmpty(CLI_DOC), 'docs/cli.md is out of date: run `npm run docs:cli`').toBe(renderCliDoc())
  })
})
