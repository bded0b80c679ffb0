import { describe, expect, it } from 'vitest'
import { parseDeb822 } from './apt-deb822.ts'
import { type PackagesContext, type StanzaResult, safeFilename, stanzaToArtifact } from './apt-packages.ts'

const SHA = 'AB'.repeat(32)
const CTX: PackagesContext = {
  feedId: 'deb',
  baseUrl: 'http://mirror.example/debian',
  indexArch: 'amd64',
  vendor: 'Debian',
  classification: 'bugfix',
  severity: 'none',
}

function stanza(fields: Record<string, string | undefined>) {
  const base: Record<string, string | undefined> = {
    Package: 'libfoo1',
    Version: '2:1.2.3+dfsg-1~deb12u1',
    Architecture: 'amd64',
    Filename: 'pool/main/libf/libfoo/libfoo1_1.2.3+dfsg-1~deb12u1_amd64.deb',
    Size: '12345',
    SHA256: SHA,
    Depends: 'libc6 (>= 2.34)',
    Description: 'the foo library\n Long text.\n .\n More.',
    ...fields,
  }
  const text = Object.entries(base)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n')
  return parseDeb822(text)[0]!
}

function skippedMessage(r: StanzaResult): string {
  expect(r.ok).toBe(false)
  return r.ok ? '' : `${r.skipped.code}: ${r.skipped.message}`
}

describe('stanzaToArtifact', () => {
  it('maps a Debian stanza to an artifact', () => {
    const r = stanzaToArtifact(stanza({}), CTX)
    expect(r).toEqual({
      ok: true,
      artifact: {
        feedId: 'deb',
        key: 'libfoo1_2:1.2.3+dfsg-1~deb12u1_amd64',
        source: {
          kind: 'http',
          url: 'http://mirror.example/debian/pool/main/libf/libfoo/libfoo1_1.2.3+dfsg-1~deb12u1_amd64.deb',
        },
        size: 12345,
        sha256: SHA.toLowerCase(),
        name: 'libfoo1',
        version: '2:1.2.3+dfsg-1~deb12u1',
        vendor: 'Debian',
        product: 'libfoo1',
        classification: 'bugfix',
        severity: 'none',
        cves: [],
        supersedes: [],
        requires: [],
        description: 'the foo library',
        os: 'linux',
        arch: 'x64',
        installer: { type: 'dpkg', package: 'libfoo1' },
        rollback: { type: 'dpkg-previous' },
        emergency: false,
      },
    })
  })

  it('maps arm64 and all, and honours a configured product', () => {
    const arm = stanzaToArtifact(stanza({ Architecture: 'arm64' }), { ...CTX, indexArch: 'arm64', product: 'Tools' })
    expect(arm.ok && [arm.artifact.arch, arm.artifact.product, arm.artifact.key]).toEqual([
      'arm64',
      'Tools',
      'libfoo1_2:1.2.3+dfsg-1~deb12u1_arm64',
    ])
    const all = stanzaToArtifact(stanza({ Architecture: 'all', Description: undefined }), CTX)
    expect(all.ok && all.artifact.arch).toBe('any')
    expect(all.ok && 'description' in all.artifact).toBe(false)
  })

  it.each([
    [{ SHA256: undefined }, 'no SHA256'],
    [{ SHA256: 'abc' }, 'malformed SHA256'],
    [{ Package: undefined }, 'Package'],
    [{ Package: 'Foo' }, 'Package'],
    [{ Package: 'a' }, 'Package'],
    [{ Version: undefined }, 'Version'],
    [{ Version: '1.0_beta' }, 'Version'],
    [{ Version: `1.${'0'.repeat(100)}` }, 'Version'],
    [{ Architecture: 'i386' }, 'Architecture'],
    [{ Architecture: undefined }, 'Architecture'],
    [{ Size: undefined }, 'Size'],
    [{ Size: '-1' }, 'Size'],
    [{ Size: `${70 * 1024 ** 3}` }, 'Size'],
    [{ Filename: undefined }, 'Filename'],
    [{ Filename: '../../../etc/passwd' }, 'Filename'],
    [{ Filename: 'pool/../../x.deb' }, 'Filename'],
    [{ Filename: '/etc/passwd' }, 'Filename'],
    [{ Filename: 'pool//x.deb' }, 'Filename'],
    [{ Filename: 'pool/./x.deb' }, 'Filename'],
    [{ Filename: 'pool\\x.deb' }, 'Filename'],
    [{ Filename: 'http://evil/x.deb' }, 'Filename'],
    [{ Filename: 'pool/x?.deb' }, 'Filename'],
  ])('skips %j (%s)', (fields, why) => {
    const msg = skippedMessage(stanzaToArtifact(stanza(fields), CTX))
    expect(msg).toMatch(/^PSW_ERR_FEED_INVALID: /)
    expect(msg).toContain(why)
  })

  it('keys skipped entries printably', () => {
    const r = stanzaToArtifact(stanza({ Package: 'bad pkg\u0007', SHA256: undefined }), CTX)
    expect(r.ok ? '' : r.skipped.key).toBe('bad?pkg?_2:1.2.3+dfsg-1~deb12u1_amd64')
  })
})

describe('safeFilename', () => {
  it('keeps + and ~ literal, percent-encodes other reserved characters', () => {
    expect(safeFilename('pool/main/g/g++/g++_12~rc1_amd64.deb')).toBe('pool/main/g/g++/g++_12~rc1_amd64.deb')
    expect(safeFilename('pool/x_1:2_all.deb')).toBe('pool/x_1%3A2_all.deb')
    expect(safeFilename('')).toBeUndefined()
    expect(safeFilename('pool/a b.deb')).toBeUndefined()
    expect(safeFilename('pool/%2e%2e/x.deb')).toBeUndefined()
  })
})
