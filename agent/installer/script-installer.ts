/**
 * The `script` installer: runs the install script carried inside the signed manifest with its
 * interpreter, and its signed rollback script when the install or the health check fails.
 *
 * Each run gets a private directory `script/staging/<bundleId>` (0700) holding the script
 * files (0400), the verified content as `payload` (0400, staged from `readVerified()`; absent
 * when the content is empty) and `work/`, the script's cwd, HOME and TMPDIR. The environment is
 * fixed (standard PATH, C.UTF-8) plus PSW_ACTION (install | rollback), PSW_BUNDLE_ID,
 * PSW_PATCH_NAME, PSW_PATCH_VERSION and PSW_PAYLOAD (the payload's path). After maxRunSeconds
 * the whole process group is killed. Exit 0 is success; 3010 (only reachable on Windows, where
 * exit codes are not cut to 8 bits) is success with a reboot required; anything else fails.
 * The rollback script lives in the journal, so a site-wide rollback can run it any time after a
 * healthy install; `commit` (the bundle was released) only drops the staged payload.
 */
import { mkdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { InstallError, StateError } from '../../shared/errors.ts'
import { type Logger, silentLogger } from '../../shared/log.ts'
import type { Manifest, ScriptInstallSpecT } from '../../shared/metadata/manifest-schema.ts'
import {
  freshPrivateDir,
  type Installer,
  installFailed,
  type OpJournalBase,
  type RecoverResult,
  readOpJournal,
  recoverJournals,
  rollbackFailed,
  rollbackUnavailable,
  stageVerified,
  writeOpJournal,
} from './installer-api.ts'
import { bundlePaths } from './journal.ts'
import {
  createProcessRunner,
  describeRun,
  lastLine,
  limitedEnv,
  type ProcessRunner,
  type RunResult,
  runDetails,
  tailText,
} from './process-runner.ts'

export type ScriptInterpreter = ScriptInstallSpecT['interpreter']

/** Exit code of a script that installed fine but needs a reboot (the Windows convention). */
export const SCRIPT_REBOOT_CODE = 3010

/** Options of {@link createScriptInstaller}. */
export interface ScriptInstallerOptions {
  /** The agent's installer directory; uses `script/` (journal, staging) in it. */
  stateDir: string
  runner?: ProcessRunner
  log?: Logger
  platform?: string
  /** Overrides of the interpreter command lines (the script path is appended). */
  interpreters?: Partial<Record<ScriptInterpreter, string[]>>
  /** Between TERM and KILL of the script's process group after a timeout. Default 5000. */
  killGraceMs?: number
}

/**
 * The command line that runs a script file with `interpreter` on `platform`, or undefined when
 * that interpreter is not available there (sh and bash off Windows, PowerShell on Windows).
 */
export function interpreterArgv(interpreter: ScriptInterpreter, platform: string): string[] | undefined {
  const win = platform === 'win32'
  if (interpreter === 'powershell') {
    return win
      ? ['powershell.exe', '-NoLogo', '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File']
      : undefined
  }
  if (win) return undefined
  return interpreter === 'sh' ? ['/bin/sh'] : ['bash']
}

interface ScriptJournal extends OpJournalBase {
  interpreter: ScriptInterpreter
  /** The signed rollback script, when the manifest asks for rollback `script`. */
  rollbackScript?: string
  maxRunSeconds: number
  name: string
  patchVersion: string
}

const validJournal = (j: Record<string, unknown>) =>
  ['sh', 'bash', 'powershell'].includes(j.interpreter as string) &&
  (j.rollbackScript === undefined || typeof j.rollbackScript === 'string') &&
  typeof j.maxRunSeconds === 'number' &&
  typeof j.name === 'string' &&
  typeof j.patchVersion === 'string'

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
const printable = (s: string) => s.replace(/[\u0000-\u001f\u007f]/g, ' ')
const runLog = (what: string, r: RunResult) =>
  tailText(`[${what}: ${describeRun(r)}]\n${r.stdout}${r.stderr ? `\n[stderr]\n${r.stderr}` : ''}`.trim())

/** Creates the script installer. */
export function createScriptInstaller(options: ScriptInstallerOptions): Installer {
  const base = join(options.stateDir, 'script')
  const runner = options.runner ?? createProcessRunner()
  const log = options.log ?? silentLogger()
  const platform = options.platform ?? process.platform
  let queue: Promise<unknown> = Promise.resolve()
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn)
    queue = run.catch(() => {})
    return run
  }
  const paths = (bundleId: string) => {
    const p = bundlePaths(base, bundleId)
    return { journal: p.journal, dir: p.staging, work: join(p.staging, 'work'), payload: join(p.staging, 'payload') }
  }
  const readJ = (path: string) => readOpJournal<ScriptJournal>(path, validJournal)
  const ext = (interpreter: ScriptInterpreter) => (interpreter === 'powershell' ? 'ps1' : 'sh')
  const argvFor = (interpreter: ScriptInterpreter): string[] => {
    const argv = options.interpreters?.[interpreter] ?? interpreterArgv(interpreter, platform)
    if (argv === undefined) {
      throw new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', `no ${interpreter} interpreter on ${platform}`)
    }
    return argv
  }

  /** Writes `text` as the script file of `action` and runs it. */
  async function runScript(j: ScriptJournal, action: 'install' | 'rollback', text: string, signal?: AbortSignal) {
    const p = paths(j.bundleId)
    await mkdir(p.work, { recursive: true, mode: 0o700 })
    const file = join(p.dir, `${action}.${ext(j.interpreter)}`)
    await rm(file, { force: true })
    await writeFile(file, text, { mode: 0o400, flag: 'wx' })
    const hasPayload = await stat(p.payload).then(
      (s) => s.isFile(),
      () => false,
    )
    const env = limitedEnv(
      {
        HOME: p.work,
        TMPDIR: p.work,
        TEMP: p.work,
        TMP: p.work,
        PSW_ACTION: action,
        PSW_BUNDLE_ID: j.bundleId,
        PSW_PATCH_NAME: printable(j.name),
        PSW_PATCH_VERSION: printable(j.patchVersion),
        ...(hasPayload ? { PSW_PAYLOAD: p.payload } : {}),
      },
      platform,
    )
    log.info({ bundleId: j.bundleId, action, interpreter: j.interpreter }, 'running signed script')
    return runner.run({
      argv: [...argvFor(j.interpreter), file],
      env,
      cwd: p.work,
      timeoutMs: j.maxRunSeconds * 1000,
      ...(signal ? { signal } : {}),
      ...(options.killGraceMs === undefined ? {} : { killGraceMs: options.killGraceMs }),
    })
  }

  /** Runs the rollback script of `j` (if it has one) and marks it rolled back; returns the log. */
  async function undo(j: ScriptJournal): Promise<string> {
    if (j.state === 'rolled-back') return ''
    const p = paths(j.bundleId)
    if (j.rollbackScript === undefined) {
      await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
      await rm(p.dir, { recursive: true, force: true })
      throw rollbackFailed(`bundle ${j.bundleId} has no rollback script`, { bundleId: j.bundleId, rolledBack: false })
    }
    if (j.state !== 'rolling-back') await writeOpJournal(p.journal, { ...j, state: 'rolling-back' })
    const r = await runScript(j, 'rollback', j.rollbackScript)
    const text = runLog('rollback script', r)
    if (r.exitCode !== 0) {
      throw rollbackFailed(`the rollback script of ${j.name} ${describeRun(r, j.maxRunSeconds)}: ${lastLine(r)}`, {
        ...runDetails(r),
        log: text,
      })
    }
    await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
    await rm(p.dir, { recursive: true, force: true })
    log.info({ bundleId: j.bundleId }, 'script install rolled back')
    return text
  }

  async function install(manifest: Manifest, openVerified: () => AsyncIterable<Uint8Array>, signal?: AbortSignal) {
    if (manifest.install.type !== 'script') {
      throw new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', `not a script install: ${manifest.install.type}`)
    }
    const spec: ScriptInstallSpecT = manifest.install
    argvFor(spec.interpreter)
    const { bundleId } = manifest
    const p = paths(bundleId)
    for (const d of ['journal', 'staging']) await mkdir(join(base, d), { recursive: true, mode: 0o700 })
    const previous = await readJ(p.journal)
    if (previous?.state === 'installed') throw new StateError('PSW_ERR_CONFLICT', `bundle ${bundleId} is installed`)
    if (previous?.state === 'applying' || previous?.state === 'rolling-back') {
      await undo(previous).catch((err: unknown) => log.warn({ bundleId, err }, 'earlier interrupted script install'))
    }
    const j: ScriptJournal = {
      version: 1,
      bundleId,
      state: 'applying',
      interpreter: spec.interpreter,
      ...(manifest.rollback.type === 'script' && spec.rollback !== undefined ? { rollbackScript: spec.rollback } : {}),
      maxRunSeconds: spec.maxRunSeconds,
      name: manifest.patch.name,
      patchVersion: manifest.patch.version,
    }
    await freshPrivateDir(p.dir)
    try {
      if (manifest.content.size > 0) await stageVerified(openVerified(), p.payload, { mode: 0o400, signal })
      await writeOpJournal(p.journal, j)
    } catch (err) {
      await rm(p.dir, { recursive: true, force: true })
      throw err
    }
    const r = await runScript(j, 'install', spec.install, signal)
    const text = runLog('install script', r)
    if (r.exitCode === 0 || (r.exitCode === SCRIPT_REBOOT_CODE && platform === 'win32')) {
      await writeOpJournal(p.journal, { ...j, state: 'installed' })
      return { rebootRequired: r.exitCode === SCRIPT_REBOOT_CODE, log: text }
    }
    const why = `the install script ${describeRun(r, spec.maxRunSeconds)}: ${lastLine(r)}`
    log.warn({ bundleId, why }, 'script install failed')
    if (j.rollbackScript === undefined) {
      await writeOpJournal(p.journal, { ...j, state: 'rolled-back' })
      await rm(p.dir, { recursive: true, force: true })
      throw installFailed(`${why} (no rollback script)`, { ...runDetails(r), log: text, rolledBack: false })
    }
    let rollbackLog: string
    try {
      rollbackLog = await undo(j)
    } catch (err) {
      const rb = err as InstallError
      throw rollbackFailed(`${why}, and rolling back failed: ${rb.message}`, {
        ...runDetails(r),
        log: text,
        rollback: rb.details,
      })
    }
    throw installFailed(`${why}; rolled back`, { ...runDetails(r), log: text, rolledBack: true, rollbackLog })
  }

  async function rollback(bundleId: string) {
    const j = await readJ(paths(bundleId).journal)
    if (j === undefined) throw new StateError('PSW_ERR_NOT_FOUND', `bundle ${bundleId} has no script journal`)
    // Refused before the journal is touched: the install stays installed (and reported so).
    if (j.state === 'installed' && j.rollbackScript === undefined)
      throw rollbackUnavailable(`${j.name} ${j.patchVersion} was installed without a rollback script`, { bundleId })
    return { log: await undo(j) }
  }

  function recover(): Promise<RecoverResult> {
    return recoverJournals(
      base,
      (id) => readJ(paths(id).journal),
      undo,
      (j) => log.warn({ bundleId: j.bundleId, state: j.state }, 'rolling back an interrupted script install'),
    )
  }

  return {
    install: (req) => serial(() => install(req.manifest, req.openVerified, req.signal)),
    rollback: (bundleId) => serial(() => rollback(bundleId)),
    commit: (bundleId) => serial(() => rm(paths(bundleId).dir, { recursive: true, force: true })),
    recover: () => serial(recover),
    status: async (bundleId) => (await readJ(paths(bundleId).journal))?.state,
  }
}
