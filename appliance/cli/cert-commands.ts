import type { Command } from 'commander'
import type { RunInfo } from '../appliance.ts'
import { applianceLayout } from '../data-dir.ts'
import type { WebCertificates } from '../http/web-tls.ts'

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`)
}

/** `patchswarm appliance cert …`: the HTTPS listener's certificate (works on a stopped appliance's data directory). */
export function registerCertCommands(appliance: Command, dataOption: readonly [string, string, string]): void {
  const cert = appliance
    .command('cert')
    .description("the HTTPS certificate: show it, renew it, or import the organisation's own")

  cert
    .command('show')
    .description('paths, fingerprints, names and expiry of the web CA and the server certificate')
    .option(...dataOption)
    .option('--json', 'print JSON')
    .action(async (o: { data: string; json?: boolean }) => {
      const { readWebCertificates } = await import('../http/web-tls.ts')
      const web = await readWebCertificates(applianceLayout(o.data), Date.now())
      if (o.json) return out(JSON.stringify(summary(web)))
      print(web)
    })

  cert
    .command('renew')
    .description('issue a new server certificate from the web CA now (current host name and addresses)')
    .option(...dataOption)
    .option('--own-ca', "replace an imported certificate with one from the appliance's web CA")
    .option('--json', 'print JSON')
    .action(async (o: { data: string; ownCa?: boolean; json?: boolean }) => {
      const { ensureWebCertificates, forgetImportedCertificate } = await import('../http/web-tls.ts')
      const { readApplianceConfig } = await import('../config.ts')
      const layout = applianceLayout(o.data)
      const config = await readApplianceConfig(o.data)
      if (o.ownCa) await forgetImportedCertificate(layout)
      const web = await ensureWebCertificates(layout, { now: Date.now(), siteName: config.siteName, renew: true })
      const reloaded = await reloadRunning(o.data)
      if (o.json) return out(JSON.stringify({ ...summary(web), reloadedPid: reloaded ?? null }))
      out(`issued a new server certificate (valid until ${web.notAfter})`)
      print(web)
      reloadNote(reloaded)
    })

  cert
    .command('import')
    .description(
      "serve the organisation's own certificate instead (PEM certificate, optionally followed by its chain, and its key)",
    )
    .option(...dataOption)
    .requiredOption('--cert <file>', 'PEM certificate: the server certificate first, then intermediates')
    .requiredOption('--key <file>', 'PEM private key of the certificate (unencrypted)')
    .option('--json', 'print JSON')
    .action(async (o: { data: string; cert: string; key: string; json?: boolean }) => {
      const { readFile } = await import('node:fs/promises')
      const { ValidationError } = await import('../../shared/errors.ts')
      const { importWebCertificate } = await import('../http/web-tls.ts')
      const { readApplianceConfig } = await import('../config.ts')
      await readApplianceConfig(o.data) // an initialised data directory, or a clear error
      const read = (path: string, what: string) =>
        readFile(path, 'utf8').catch((err: Error) => {
          throw new ValidationError('PSW_ERR_USAGE', `${what}: cannot read ${path}: ${err.message}`)
        })
      const [certPem, keyPem] = [await read(o.cert, '--cert'), await read(o.key, '--key')]
      const web = await importWebCertificate(applianceLayout(o.data), { certPem, keyPem, now: Date.now() })
      const reloaded = await reloadRunning(o.data)
      if (o.json) return out(JSON.stringify({ ...summary(web), reloadedPid: reloaded ?? null }))
      out('imported the server certificate; it is never replaced automatically (renew it yourself before it expires)')
      print(web)
      reloadNote(reloaded)
    })
}

function summary(web: WebCertificates) {
  return {
    imported: web.imported,
    caFingerprint256: web.caFingerprint256,
    serverFingerprint256: web.serverFingerprint256,
    notAfter: web.notAfter,
    dnsNames: web.dnsNames,
    ipAddresses: web.ipAddresses,
    paths: web.paths,
    warnings: web.warnings,
  }
}

function print(web: WebCertificates): void {
  out(`server certificate  ${web.paths.serverCert}${web.imported ? '  (imported)' : ''}`)
  out(`  key               ${web.paths.serverKey}`)
  out(`  SHA-256           ${web.serverFingerprint256}`)
  out(`  valid until       ${web.notAfter}`)
  out(`  DNS names         ${web.dnsNames.join(', ') || '-'}`)
  out(`  IP addresses      ${web.ipAddresses.join(', ') || '-'}`)
  if (web.caPem === null) out('web CA              unknown (imported without its CA)')
  else {
    out(`web CA              ${web.imported ? '(top of the imported chain)' : web.paths.caCert}`)
    out(`  SHA-256           ${web.caFingerprint256}`)
  }
  for (const w of web.warnings) process.stderr.write(`warning: ${w}\n`)
}

function reloadNote(pid: number | undefined): void {
  if (pid !== undefined) out(`the running appliance (pid ${pid}) now serves it to new connections`)
  else out('no appliance runs on this data directory: it is served from the next start')
}

/**
 * Asks an appliance running on this data directory to reload its certificate (SIGHUP), after
 * making sure the pid in run.json is that appliance (it answers on its HTTP URL and, where
 * /proc exists, runs `appliance start`). Returns its pid, or undefined if none runs.
 */
async function reloadRunning(dataDir: string): Promise<number | undefined> {
  const { readFile } = await import('node:fs/promises')
  const layout = applianceLayout(dataDir)
  let info: RunInfo
  try {
    info = JSON.parse(await readFile(layout.runInfo, 'utf8')) as RunInfo
  } catch {
    return undefined
  }
  try {
    process.kill(info.pid, 0)
  } catch {
    return undefined
  }
  const cmdline = await readFile(`/proc/${info.pid}/cmdline`, 'utf8').catch(() => undefined)
  if (cmdline !== undefined && !/appliance\0start/.test(cmdline)) return undefined
  const healthy = await fetch(new URL('/api/v1/health', info.httpUrl), { signal: AbortSignal.timeout(5_000) })
    .then((r) => r.ok)
    .catch(() => false)
  if (!healthy) return undefined
  process.kill(info.pid, 'SIGHUP')
  return info.pid
}
