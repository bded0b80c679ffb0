import { describe, expect, it } from 'vitest'
import { type Manifest, validateManifest } from './manifest-schema.ts'

const H = (c: string) => c.repeat(64)
const base: Manifest = {
  type: 'patchswarm/manifest',
  specVersion: 1,
  bundleId: H('a'),
  version: 1,
  created: '2026-11-23T12:00:00.000Z',
  expires: '2027-02-21T12:00:00.000Z',
  patch: {
    name: 'openssl-fix',
    vendor: 'local',
    product: 'openssl',
    version: '3.0.13-1',
    classification: 'security',
    severity: 'high',
    cves: ['CVE-2024-0727'],
    supersedes: [],
    requires: [],
    platform: { os: 'linux', arch: 'x64' },
  },
  install: { type: 'files', targetRoot: '/opt/openssl', maxRunSeconds: 600 },
  rollback: { type: 'files-backup' },
  content: { size: 65537, chunkSize: 65536, sha256: H('a'), chunks: [H('b'), H('c')] },
}

describe('manifest validation', () => {
  it('accepts a consistent manifest', () => {
    expect(validateManifest(structuredClone(base)).bundleId).toBe(H('a'))
  })

  it.each([
    ['chunk count does not match the size', { content: { ...base.content, chunks: [H('b')] } }],
    ['chunk size not a power of two', { content: { ...base.content, chunkSize: 65536 + 4096 } }],
    ['bundleId differs from the content hash', { bundleId: H('d') }],
    ['expires before created', { expires: '2026-01-01T00:00:00.000Z' }],
    ['unknown field', { extra: true }],
    ['bad CVE id', { patch: { ...base.patch, cves: ['CVE-24-1'] } }],
    ['unknown installer', { install: { ...base.install, type: 'rpm' } }],
    ['uppercase hash', { content: { ...base.content, sha256: 'A'.repeat(64) } }],
    ['negative size', { content: { ...base.content, size: -1 } }],
    ['expiry that is not a real date (never expires otherwise)', { expires: '2027-13-01T00:00:00.000Z' }],
  ])('refuses a manifest whose %s', (_what, change) => {
    expect(() => validateManifest({ ...structuredClone(base), ...change })).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_MANIFEST_INVALID' }),
    )
  })

  describe('content format and installers', () => {
    const raw = { ...base.content, format: 'raw' as const }
    const dpkg = { type: 'dpkg' as const, package: 'openssl', maxRunSeconds: 900 }

    it('treats an absent format as tar and accepts an explicit one', () => {
      expect(validateManifest(structuredClone(base)).content.format).toBeUndefined()
      expect(
        validateManifest({ ...structuredClone(base), content: { ...base.content, format: 'tar' } }).content.format,
      ).toBe('tar')
    })

    it.each<[string, Partial<Manifest>]>([
      ['raw files with backups', { content: raw }],
      ['raw files without rollback', { content: raw, rollback: { type: 'none' } }],
      ['tar files without rollback', { rollback: { type: 'none' } }],
      ['raw dpkg with the previous package', { content: raw, install: dpkg, rollback: { type: 'dpkg-previous' } }],
      ['raw dpkg without rollback', { content: raw, install: dpkg, rollback: { type: 'none' } }],
    ])('accepts %s', (_what, change) => {
      const m = validateManifest({ ...structuredClone(base), ...change })
      expect(m.install.type).toBe((change.install ?? base.install).type)
    })

    it.each<[string, object]>([
      ['dpkg on tar content (format absent)', { install: dpkg, rollback: { type: 'dpkg-previous' } }],
      [
        'dpkg on explicit tar content',
        { content: { ...base.content, format: 'tar' }, install: dpkg, rollback: { type: 'none' } },
      ],
      ['dpkg with file backups', { content: raw, install: dpkg, rollback: { type: 'files-backup' } }],
      ['files with dpkg-previous', { content: raw, rollback: { type: 'dpkg-previous' } }],
      ['unknown format', { content: { ...base.content, format: 'zip' } }],
      ['unknown rollback', { rollback: { type: 'snapshot' } }],
      [
        'dpkg package name with capitals',
        { content: raw, install: { ...dpkg, package: 'OpenSSL' }, rollback: { type: 'none' } },
      ],
      [
        'dpkg without maxRunSeconds',
        { content: raw, install: { type: 'dpkg', package: 'x1' }, rollback: { type: 'none' } },
      ],
      ['dpkg with a targetRoot', { content: raw, install: { ...dpkg, targetRoot: '/' }, rollback: { type: 'none' } }],
    ])('refuses %s', (_what, change) => {
      expect(() => validateManifest({ ...structuredClone(base), ...change })).toThrow(
        expect.objectContaining({ code: 'PSW_ERR_MANIFEST_INVALID' }),
      )
    })
  })
})

describe('script, Windows installers and health checks', () => {
  const raw = { ...base.content, format: 'raw' as const }
  const script = { type: 'script' as const, interpreter: 'sh' as const, install: 'echo hi', maxRunSeconds: 60 }
  const win = { ...base.patch, platform: { os: 'windows' as const, arch: 'x64' as const } }
  const health = { checks: [{ type: 'command', argv: ['true'], timeoutSeconds: 5 }], timeoutSeconds: 30 }
  const ok = (change: object) => validateManifest({ ...structuredClone(base), ...change })
  const refused = (change: object) =>
    expect(() => ok(change)).toThrow(expect.objectContaining({ code: 'PSW_ERR_MANIFEST_INVALID' }))

  it.each<[string, object]>([
    [
      'a script with its signed rollback script',
      { install: { ...script, rollback: 'echo undo' }, rollback: { type: 'script' } },
    ],
    ['a script without rollback on tar content', { install: script, rollback: { type: 'none' } }],
    [
      'a bash script on raw content',
      { content: raw, install: { ...script, interpreter: 'bash' }, rollback: { type: 'none' } },
    ],
    ['a PowerShell script', { install: { ...script, interpreter: 'powershell' }, rollback: { type: 'none' } }],
    ['a 64 KiB script', { install: { ...script, install: 'x'.repeat(64 << 10) }, rollback: { type: 'none' } }],
    [
      'a plain msi',
      { patch: win, content: raw, install: { type: 'msi', maxRunSeconds: 600 }, rollback: { type: 'none' } },
    ],
    [
      'an msi with arguments and exit codes',
      {
        patch: win,
        content: raw,
        install: {
          type: 'msi',
          maxRunSeconds: 600,
          args: ['INSTALLDIR=C:\\Program Files\\App', 'REBOOT=ReallySuppress'],
          successCodes: [1, -2147024891],
          rebootCodes: [4294967295],
        },
        rollback: { type: 'none' },
      },
    ],
    ['an msu', { patch: win, content: raw, install: { type: 'msu', maxRunSeconds: 600 }, rollback: { type: 'none' } }],
    [
      'an exe',
      {
        patch: win,
        content: raw,
        install: { type: 'exe', maxRunSeconds: 60, args: ['/S'] },
        rollback: { type: 'none' },
      },
    ],
    [
      'a health check of each kind',
      {
        health: {
          checks: [
            { type: 'command', argv: ['/usr/bin/curl', '-fsS', 'http://127.0.0.1/health'], timeoutSeconds: 10 },
            { type: 'service', name: 'nginx.service' },
            { type: 'service', name: 'getty@tty1.service' },
            { type: 'tcp-port', port: 443 },
            { type: 'tcp-port', port: 8080, host: '127.0.0.1' },
          ],
          timeoutSeconds: 120,
          retries: 3,
          retryDelaySeconds: 10,
        },
      },
    ],
    [
      'a health check on a dpkg install',
      {
        content: raw,
        install: { type: 'dpkg', package: 'nginx', maxRunSeconds: 600 },
        rollback: { type: 'dpkg-previous' },
        health,
      },
    ],
  ])('accepts %s', (_what, change) => {
    expect(ok(change).bundleId).toBe(H('a'))
  })

  it.each<[string, object]>([
    ['rollback script without install.rollback', { install: script, rollback: { type: 'script' } }],
    ['rollback script for a files install', { rollback: { type: 'script' } }],
    ['files-backup for a script', { install: script, rollback: { type: 'files-backup' } }],
    ['an unknown interpreter', { install: { ...script, interpreter: 'python' }, rollback: { type: 'none' } }],
    ['an empty script', { install: { ...script, install: '' }, rollback: { type: 'none' } }],
    [
      'a script over 64 KiB',
      { install: { ...script, install: 'x'.repeat((64 << 10) + 1) }, rollback: { type: 'none' } },
    ],
    [
      'a script over 64 KiB of UTF-8 in fewer characters',
      { install: { ...script, install: '€'.repeat(30_000) }, rollback: { type: 'none' } },
    ],
    [
      'a rollback script over 64 KiB',
      { install: { ...script, rollback: 'é'.repeat(40_000) }, rollback: { type: 'script' } },
    ],
    ['a NUL in a script', { install: { ...script, install: 'echo a\0b' }, rollback: { type: 'none' } }],
    [
      'a script without maxRunSeconds',
      { install: { type: 'script', interpreter: 'sh', install: 'x' }, rollback: { type: 'none' } },
    ],
    ['an msi on tar content', { patch: win, install: { type: 'msi', maxRunSeconds: 60 }, rollback: { type: 'none' } }],
    ['an msi for Linux', { content: raw, install: { type: 'msi', maxRunSeconds: 60 }, rollback: { type: 'none' } }],
    [
      'an msi for any OS',
      {
        patch: { ...win, platform: { os: 'any', arch: 'any' } },
        content: raw,
        install: { type: 'msi', maxRunSeconds: 60 },
        rollback: { type: 'none' },
      },
    ],
    [
      'an msi with a rollback',
      { patch: win, content: raw, install: { type: 'msi', maxRunSeconds: 60 }, rollback: { type: 'files-backup' } },
    ],
    [
      'an exe argument with a line break',
      {
        patch: win,
        content: raw,
        install: { type: 'exe', maxRunSeconds: 60, args: ['/S\r\n'] },
        rollback: { type: 'none' },
      },
    ],
    [
      '33 exe arguments',
      {
        patch: win,
        content: raw,
        install: { type: 'exe', maxRunSeconds: 60, args: Array(33).fill('/x') },
        rollback: { type: 'none' },
      },
    ],
    [
      'a non-integer exit code',
      {
        patch: win,
        content: raw,
        install: { type: 'exe', maxRunSeconds: 60, successCodes: [1.5] },
        rollback: { type: 'none' },
      },
    ],
    [
      'an exit code beyond 32 bits',
      {
        patch: win,
        content: raw,
        install: { type: 'exe', maxRunSeconds: 60, rebootCodes: [2 ** 32] },
        rollback: { type: 'none' },
      },
    ],
    ['a health check without checks', { health: { checks: [], timeoutSeconds: 10 } }],
    ['17 health checks', { health: { checks: Array(17).fill({ type: 'tcp-port', port: 80 }), timeoutSeconds: 10 } }],
    ['a health check without timeout', { health: { checks: health.checks } }],
    ['a health check of an hour and a second', { health: { ...health, timeoutSeconds: 3601 } }],
    ['21 retries', { health: { ...health, retries: 21 } }],
    [
      'a TCP check on another host',
      { health: { ...health, checks: [{ type: 'tcp-port', port: 22, host: '10.0.0.1' }] } },
    ],
    ['TCP port 0', { health: { ...health, checks: [{ type: 'tcp-port', port: 0 }] } }],
    ['TCP port 65536', { health: { ...health, checks: [{ type: 'tcp-port', port: 65_536 }] } }],
    ['a service name that is an option', { health: { ...health, checks: [{ type: 'service', name: '--all' }] } }],
    ['a service name with a slash', { health: { ...health, checks: [{ type: 'service', name: 'a/b' }] } }],
    ['an empty command', { health: { ...health, checks: [{ type: 'command', argv: [], timeoutSeconds: 5 }] } }],
    ['a command without its timeout', { health: { ...health, checks: [{ type: 'command', argv: ['true'] }] } }],
    ['a NUL in a command', { health: { ...health, checks: [{ type: 'command', argv: ['a\0'], timeoutSeconds: 5 }] } }],
    ['an unknown check', { health: { ...health, checks: [{ type: 'http', url: 'http://x' }] } }],
    ['an unknown health field', { health: { ...health, shell: true } }],
  ])('refuses %s', (_what, change) => {
    refused(change)
  })
})
