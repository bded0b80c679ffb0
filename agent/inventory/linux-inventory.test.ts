import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { checkInventoryReport } from '../../shared/protocol/control-protocol.ts'
import { type CommandRunner, runCommand } from './command-runner.ts'
import type { OsInfo } from './host-facts.ts'
import { collectInventory } from './inventory.ts'
import {
  createLinuxInventory,
  DPKG_QUERY_FORMAT,
  parseDpkgQuery,
  parseOsRelease,
  parseRebootPackages,
} from './linux-inventory.ts'

const fixture = (name: string) => readFile(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')

const fakeOs: OsInfo = {
  hostname: () => 'pc-0042',
  release: () => '6.1.0-18-amd64',
  arch: () => 'x64',
  networkInterfaces: () => ({
    lo: [
      {
        address: '127.0.0.1',
        netmask: '255.0.0.0',
        family: 'IPv4',
        mac: '00:00:00:00:00:00',
        internal: true,
        cidr: '127.0.0.1/8',
      },
    ],
    eth0: [
      {
        address: 'fe80::5054:ff:fe12:3456',
        netmask: 'ffff:ffff:ffff:ffff::',
        family: 'IPv6',
        mac: '52:54:00:12:34:56',
        internal: false,
        cidr: 'fe80::5054:ff:fe12:3456/64',
        scopeid: 2,
      },
      {
        address: '10.0.0.7',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '52:54:00:12:34:56',
        internal: false,
        cidr: '10.0.0.7/24',
      },
    ],
  }),
}

describe('os-release', () => {
  it('parses Debian 12', async () => {
    expect(parseOsRelease(await fixture('debian-12.os-release'))).toEqual({
      id: 'debian',
      name: 'Debian GNU/Linux',
      prettyName: 'Debian GNU/Linux 12 (bookworm)',
      version: '12 (bookworm)',
      versionId: '12',
      codename: 'bookworm',
    })
  })

  it('parses Ubuntu 24.04 with ID_LIKE', async () => {
    expect(parseOsRelease(await fixture('ubuntu-24.04.os-release'))).toEqual({
      id: 'ubuntu',
      idLike: ['debian'],
      name: 'Ubuntu',
      prettyName: 'Ubuntu 24.04.1 LTS',
      version: '24.04.1 LTS (Noble Numbat)',
      versionId: '24.04',
      codename: 'noble',
    })
  })

  it('unquotes shell-style values and ignores comments and junk', () => {
    const text = [
      '# a comment',
      '',
      'NAME=\'Single "quoted"\'',
      'PRETTY_NAME="Say \\"hi\\" for \\$5"',
      'not a line',
      'ID=Fedora',
      'VERSION_ID=40',
    ].join('\n')
    expect(parseOsRelease(text)).toEqual({
      id: 'fedora',
      name: 'Single "quoted"',
      prettyName: 'Say "hi" for $5',
      versionId: '40',
    })
  })
})

describe('dpkg-query output', () => {
  it('keeps installed and broken packages, drops removed ones, keeps versions verbatim', async () => {
    const { packages, truncated, malformed } = parseDpkgQuery(await fixture('dpkg-query.txt'))
    expect(truncated).toBe(false)
    expect(malformed).toBe(0)
    const names = packages.map((p) => `${p.name}:${p.arch}`)
    expect(names).not.toContain('old-removed:amd64')
    expect(names.some((n) => n.startsWith('purged-thing'))).toBe(false)
    expect(packages).toHaveLength(14)
    // sorted by name, then architecture
    expect(names.indexOf('libc6:amd64') + 1).toBe(names.indexOf('libc6:i386'))
    const get = (name: string) => packages.find((p) => p.name === name)
    expect(get('patchswarm-demo')).toEqual({ name: 'patchswarm-demo', version: '1:2.3~rc1-4+deb12u1', arch: 'all' })
    expect(get('bind9-libs')?.version).toBe('1:9.18.24-1')
    expect(get('curl')).toMatchObject({ held: true })
    expect(get('curl')?.state).toBeUndefined()
    expect(get('libssl3')).toMatchObject({ state: 'unpacked', version: '3.0.11-1~deb12u2' })
    expect(get('linux-image-6.1.0-18-amd64')).toMatchObject({ state: 'half-configured' })
    expect(get('openssh-server')).toMatchObject({ state: 'half-installed', reinstRequired: true })
    expect(get('man-db')).toMatchObject({ state: 'triggers-awaiting' })
    expect(get('dbus')).toMatchObject({ state: 'triggers-pending' })
  })

  it('truncates beyond the limit deterministically and counts malformed lines', () => {
    const text = [
      'zlib1g\t1:1.2.13.dfsg-1\tamd64\tii ',
      'apt\t2.6.1\tamd64\tii ',
      'broken line without tabs',
      'x\t1\tamd64\tiQ ',
      'libc6\t2.36-9\tamd64\tii ',
      '',
    ].join('\n')
    const r = parseDpkgQuery(text, 2)
    expect(r.truncated).toBe(true)
    expect(r.malformed).toBe(2)
    expect(r.packages.map((p) => p.name)).toEqual(['apt', 'libc6'])
  })

  it('reads reboot-required.pkgs', () => {
    expect(parseRebootPackages('linux-image-6.1.0-18-amd64\nlibc6\n\nlibc6\n')).toEqual([
      'linux-image-6.1.0-18-amd64',
      'libc6',
    ])
  })
})

describe('Linux adapter', () => {
  let root: string
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'psw-inv-'))
    await mkdir(join(root, 'etc'), { recursive: true })
    await mkdir(join(root, 'var/lib/dpkg'), { recursive: true })
    await mkdir(join(root, 'run'), { recursive: true })
    await writeFile(join(root, 'etc/os-release'), await fixture('debian-12.os-release'))
    await writeFile(join(root, 'var/lib/dpkg/status'), 'Package: apt\n')
  })
  afterEach(async () => {
    await rm(root, { recursive: true, force: true })
  })

  const recordingRunner = (output: () => Promise<string>) => {
    const calls: Array<{ command: string; args: readonly string[] }> = []
    const runner: CommandRunner = async (command, args) => {
      calls.push({ command, args })
      return Buffer.from(await output())
    }
    return { calls, runner }
  }

  it('collects host facts, packages and reboot state, and runs dpkg-query only when the status file changed', async () => {
    const { calls, runner } = recordingRunner(() => fixture('dpkg-query.txt'))
    const adapter = createLinuxInventory({ root, runner, os: fakeOs })
    const facts = await adapter.collect()
    expect(calls).toEqual([
      { command: 'dpkg-query', args: [`--admindir=${join(root, 'var/lib/dpkg')}`, '-W', `-f=${DPKG_QUERY_FORMAT}`] },
    ])
    expect(facts).toMatchObject({
      hostname: 'pc-0042',
      os: {
        platform: 'linux',
        id: 'debian',
        name: 'Debian GNU/Linux 12 (bookworm)',
        versionId: '12',
        codename: 'bookworm',
        kernel: '6.1.0-18-amd64',
        arch: 'x64',
      },
      packageManager: 'dpkg',
      reboot: { pending: false, reasons: [] },
    })
    expect(facts.addresses).toEqual([
      { interface: 'eth0', family: 'IPv4', cidr: '10.0.0.7/24', mac: '52:54:00:12:34:56' },
      { interface: 'eth0', family: 'IPv6', cidr: 'fe80::5054:ff:fe12:3456/64', mac: '52:54:00:12:34:56' },
    ])
    expect(facts.packages).toHaveLength(14)
    expect(facts.errors).toBeUndefined()

    await writeFile(join(root, 'run/reboot-required'), '*** System restart required ***\n')
    await writeFile(join(root, 'run/reboot-required.pkgs'), 'linux-image-6.1.0-18-amd64\n')
    const again = await adapter.collect()
    expect(calls).toHaveLength(1) // dpkg status unchanged: cached
    expect(again.reboot).toEqual({
      pending: true,
      reasons: ['reboot-required'],
      packages: ['linux-image-6.1.0-18-amd64'],
    })

    await writeFile(join(root, 'var/lib/dpkg/status'), 'Package: apt\n\nPackage: curl\n')
    await adapter.collect()
    expect(calls).toHaveLength(2)
  })

  it('reports a failing dpkg-query as an error entry and still sends the rest', async () => {
    const runner: CommandRunner = () => runCommand('false', [], { maxBytes: 1000, timeoutMs: 5000 })
    const facts = await createLinuxInventory({ root, runner, os: fakeOs }).collect()
    expect(facts.packageManager).toBe('dpkg')
    expect(facts.packages).toEqual([])
    expect(facts.errors).toEqual([expect.objectContaining({ source: 'dpkg-query', code: 'PSW_ERR_INVENTORY_COMMAND' })])
    expect(facts.os.id).toBe('debian')
  })

  it('reports no package manager without a dpkg database', async () => {
    await rm(join(root, 'var/lib/dpkg'), { recursive: true })
    const { calls, runner } = recordingRunner(async () => '')
    const facts = await createLinuxInventory({ root, runner, os: fakeOs }).collect()
    expect(calls).toEqual([])
    expect(facts.packageManager).toBe('none')
  })

  it('flags truncation beyond maxPackages', async () => {
    const { runner } = recordingRunner(() => fixture('dpkg-query.txt'))
    const facts = await createLinuxInventory({ root, runner, os: fakeOs, maxPackages: 5 }).collect()
    expect(facts.packages).toHaveLength(5)
    expect(facts.packagesTruncated).toBe(true)
    expect(facts.errors?.[0]).toMatchObject({ code: 'PSW_ERR_TOO_LARGE' })
  })
})

describe('command runner', () => {
  it('fails with PSW_ERR_INVENTORY_COMMAND on a missing program, exit status, timeout and too much output', async () => {
    const opts = { maxBytes: 1000, timeoutMs: 5000 }
    await expect(runCommand('patchswarm-no-such-program', [], opts)).rejects.toMatchObject({
      code: 'PSW_ERR_INVENTORY_COMMAND',
    })
    await expect(
      runCommand(process.execPath, ['-e', 'process.stderr.write("boom\\n"); process.exit(3)'], opts),
    ).rejects.toMatchObject({ code: 'PSW_ERR_INVENTORY_COMMAND', message: expect.stringContaining('boom') })
    await expect(
      runCommand(process.execPath, ['-e', 'setTimeout(() => {}, 10000)'], { maxBytes: 1000, timeoutMs: 200 }),
    ).rejects.toMatchObject({ code: 'PSW_ERR_INVENTORY_COMMAND' })
    await expect(
      runCommand(process.execPath, ['-e', 'process.stdout.write("x".repeat(100000))'], opts),
    ).rejects.toMatchObject({ code: 'PSW_ERR_INVENTORY_COMMAND', message: expect.stringContaining('more than') })
    const out = await runCommand(process.execPath, ['-e', 'process.stdout.write("ok")'], opts)
    expect(Buffer.from(out).toString()).toBe('ok')
  })
})

const hasDpkgQuery = (process.env['PATH'] ?? '').split(delimiter).some((d) => existsSync(join(d, 'dpkg-query')))

describe('this machine', () => {
  // In CI the runner image has dpkg: a missing dpkg-query there is a failure, not a skip.
  it.skipIf(!hasDpkgQuery && !process.env['CI'])(
    'runs the real dpkg-query and produces a report that passes the wire schema',
    async () => {
      const adapter = createLinuxInventory()
      const report = await collectInventory({
        adapter,
        installed: async () => [],
        agentVersion: '0.1.0',
        clock: new ManualClock(),
      })
      expect(report.errors).toBeUndefined()
      expect(report.packageManager).toBe('dpkg')
      expect(report.packages.length).toBeGreaterThan(10)
      expect(report.packages.find((p) => p.name === 'dpkg')).toMatchObject({ version: expect.any(String) })
      expect(checkInventoryReport.is(report)).toBe(true)
      expect(report.os.platform).toBe('linux')
    },
  )
})
