import { describe, expect, it } from 'vitest'
import type { Manifest } from '../shared/metadata/manifest-schema.ts'
import { checkSupported, filesInstall } from './install-support.ts'

const H = (c: string) => c.repeat(64)
const base: Manifest = {
  type: 'patchswarm/manifest',
  specVersion: 1,
  bundleId: H('a'),
  version: 1,
  created: '2026-11-23T12:00:00.000Z',
  expires: '2027-02-21T12:00:00.000Z',
  patch: {
    name: 'openssl',
    vendor: 'debian',
    product: 'openssl',
    version: '3.0.13-1',
    classification: 'security',
    severity: 'high',
    cves: [],
    supersedes: [],
    requires: [],
    platform: { os: 'linux', arch: 'any' },
  },
  install: { type: 'files', targetRoot: '/opt/openssl', maxRunSeconds: 600 },
  rollback: { type: 'files-backup' },
  content: { size: 10, chunkSize: 65536, sha256: H('a'), chunks: [H('b')], format: 'raw' },
}

describe('install support', () => {
  it('accepts the files installer on raw and tar content for this platform', () => {
    expect(() => checkSupported(base, 'linux', 'x64')).not.toThrow()
    expect(() =>
      checkSupported({ ...base, content: { ...base.content, format: undefined } }, 'linux', 'arm64'),
    ).not.toThrow()
    expect(filesInstall(base).targetRoot).toBe('/opt/openssl')
  })

  it('refuses a dpkg install cleanly with PSW_ERR_INSTALLER_UNSUPPORTED', () => {
    const dpkg: Manifest = {
      ...base,
      install: { type: 'dpkg', package: 'openssl', maxRunSeconds: 600 },
      rollback: { type: 'dpkg-previous' },
    }
    expect(() => checkSupported(dpkg, 'linux', 'x64')).toThrow(
      expect.objectContaining({ name: 'InstallError', code: 'PSW_ERR_INSTALLER_UNSUPPORTED' }),
    )
    expect(() => filesInstall(dpkg)).toThrow(expect.objectContaining({ code: 'PSW_ERR_INSTALLER_UNSUPPORTED' }))
  })

  it('refuses another OS or architecture', () => {
    expect(() => checkSupported(base, 'win32', 'x64')).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_INSTALLER_UNSUPPORTED' }),
    )
    const arm = { ...base, patch: { ...base.patch, platform: { os: 'any', arch: 'arm64' } } } as Manifest
    expect(() => checkSupported(arm, 'darwin', 'x64')).toThrow(
      expect.objectContaining({ code: 'PSW_ERR_INSTALLER_UNSUPPORTED' }),
    )
  })
})
