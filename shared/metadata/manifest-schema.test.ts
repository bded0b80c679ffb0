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
    ['unknown installer', { install: { ...base.install, type: 'msi' } }],
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
