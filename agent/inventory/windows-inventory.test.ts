import { readFile } from 'node:fs/promises'
import { describe, expect, it } from 'vitest'
import { ManualClock } from '../../shared/clock.ts'
import { PswError } from '../../shared/errors.ts'
import { checkInventoryReport } from '../../shared/protocol/control-protocol.ts'
import type { CommandRunner } from './command-runner.ts'
import type { OsInfo } from './host-facts.ts'
import { collectInventory } from './inventory.ts'
import {
  createWindowsInventory,
  decodePowerShellOutput,
  parseHotfixes,
  parseJsonList,
  parseOperatingSystem,
  parseRebootIndicators,
  parseUninstallEntries,
  parseWindowsDate,
  WINDOWS_QUERIES,
} from './windows-inventory.ts'

const bytes = async (name: string) => new Uint8Array(await readFile(new URL(`./fixtures/${name}`, import.meta.url)))

const winOs: OsInfo = {
  hostname: () => 'PC-0042',
  release: () => '10.0.22631',
  arch: () => 'x64',
  networkInterfaces: () => ({
    Ethernet: [
      {
        address: '10.1.2.3',
        netmask: '255.255.255.0',
        family: 'IPv4',
        mac: '00:15:5d:01:02:03',
        internal: false,
        cidr: '10.1.2.3/24',
      },
    ],
  }),
}

describe('PowerShell output decoding', () => {
  it('reads UTF-16LE with BOM the same as UTF-8', async () => {
    const utf16 = await bytes('win-uninstall-utf16le.json')
    expect([utf16[0], utf16[1]]).toEqual([0xff, 0xfe])
    expect(parseUninstallEntries(utf16)).toEqual(parseUninstallEntries(await bytes('win-uninstall.json')))
    expect(decodePowerShellOutput(utf16)).toContain('Müller & Söhne GmbH')
  })

  it('reads UTF-8 with BOM, UTF-16BE with BOM and UTF-16LE without BOM', () => {
    const json = '{"DisplayName":"Büro","DisplayVersion":"1.0"}'
    const le = Buffer.from(json, 'utf16le')
    const be = Buffer.from(le).swap16()
    for (const b of [
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(json)]),
      Buffer.concat([Buffer.from([0xfe, 0xff]), be]),
      le,
    ]) {
      expect(decodePowerShellOutput(b)).toBe(json)
    }
  })

  it('takes one object, an array, null or nothing', () => {
    expect(parseJsonList('', 'x')).toEqual([])
    expect(parseJsonList('  \r\n', 'x')).toEqual([])
    expect(parseJsonList('null', 'x')).toEqual([])
    expect(parseJsonList('{"a":1}', 'x')).toEqual([{ a: 1 }])
    expect(parseJsonList('[{"a":1},null,3,{"b":2}]', 'x')).toEqual([{ a: 1 }, { b: 2 }])
    expect(() => parseJsonList('{"a":', 'x')).toThrow(expect.objectContaining({ code: 'PSW_ERR_SCHEMA' }))
  })
})

describe('dates', () => {
  it('understands every form PowerShell prints', () => {
    expect(parseWindowsDate('/Date(1707782400000)/')).toBe('2024-02-13')
    expect(parseWindowsDate('/Date(1707782400000+0100)/')).toBe('2024-02-13')
    expect(
      parseWindowsDate({ value: '/Date(1707782400000)/', DateTime: 'Tuesday, February 13, 2024 12:00:00 AM' }),
    ).toBe('2024-02-13')
    expect(parseWindowsDate('2024-12-11T00:00:00+01:00')).toBe('2024-12-11')
    expect(parseWindowsDate('2/13/2024')).toBe('2024-02-13')
    expect(parseWindowsDate('20231005')).toBe('2023-10-05')
    expect(parseWindowsDate('01d9a1b3c4d5e6f7')).toBe('2023-06-18')
  })

  it('drops impossible or missing dates', () => {
    for (const v of [null, undefined, '', '2023-13-45', '20230230', '13/1/2024', 'yesterday', 42, {}, []]) {
      expect(parseWindowsDate(v)).toBeUndefined()
    }
  })
})

describe('uninstall registry entries', () => {
  it('parses an array: skips entries without DisplayName, dedupes both views, keeps missing versions', async () => {
    const { packages, truncated } = parseUninstallEntries(await bytes('win-uninstall.json'))
    expect(truncated).toBe(false)
    expect(packages.map((p) => p.name)).toEqual([
      '7-Zip 23.01 (x64)',
      'Cisco AnyConnect Secure Mobility Client',
      'Lohnbuchhaltung Müller – Büro 2024',
      'Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33135',
      'Mozilla Firefox (x64 de)',
      'Notepad++ (64-bit x64)',
    ])
    const get = (prefix: string) => packages.find((p) => p.name.startsWith(prefix))
    expect(get('Notepad++')).toEqual({
      name: 'Notepad++ (64-bit x64)',
      version: '',
      publisher: 'Notepad++ Team',
      installDate: '2024-02-01',
    })
    expect(get('Lohnbuchhaltung')).toMatchObject({
      version: '',
      publisher: 'Müller & Söhne GmbH',
      installDate: '2023-10-05',
    })
    expect(get('Cisco')).toEqual({
      name: 'Cisco AnyConnect Secure Mobility Client',
      version: '4.1',
      publisher: 'Cisco Systems, Inc.',
    })
    expect(get('7-Zip')).toEqual({ name: '7-Zip 23.01 (x64)', version: '23.01', publisher: 'Igor Pavlov' })
  })

  it('parses a single object (one uninstall key)', async () => {
    expect(parseUninstallEntries(await bytes('win-uninstall-single.json')).packages).toEqual([
      { name: 'Google Chrome', version: '122.0.6261.112', publisher: 'Google LLC', installDate: '2024-03-06' },
    ])
  })

  it('skips system components and child entries, and truncates beyond the limit', () => {
    const json = JSON.stringify([
      { DisplayName: 'C', DisplayVersion: '1' },
      { DisplayName: 'Hidden', SystemComponent: 1 },
      { DisplayName: 'Child', ParentKeyName: 'Office16.PROPLUS' },
      { DisplayName: 'A', DisplayVersion: '1' },
      { DisplayName: 'B', DisplayVersion: '1' },
    ])
    expect(parseUninstallEntries(json, 2)).toEqual({
      packages: [
        { name: 'A', version: '1' },
        { name: 'B', version: '1' },
      ],
      truncated: true,
    })
  })
})

describe('hotfixes', () => {
  it('parses Windows PowerShell 5.1 CIM output', async () => {
    expect(parseHotfixes(await bytes('win-qfe.json'))).toEqual([
      { id: 'File 1', installedOn: '2023-06-18' },
      { id: 'KB5011048', description: 'Update' },
      { id: 'KB5034441', description: 'Security Update', installedOn: '2024-02-13' },
      { id: 'KB5034763', description: 'Update', installedOn: '2024-03-12' },
    ])
  })

  it('parses a single PowerShell 7 object', async () => {
    expect(parseHotfixes(await bytes('win-qfe-single.json'))).toEqual([
      { id: 'KB5048667', description: 'Security Update', installedOn: '2024-12-11' },
    ])
  })
})

describe('reboot indicators and OS', () => {
  it('finds RebootPending and PendingFileRenameOperations', async () => {
    expect(parseRebootIndicators(await bytes('win-reboot-pending.json'))).toEqual({
      pending: true,
      reasons: ['cbs-reboot-pending', 'pending-file-rename'],
    })
    expect(parseRebootIndicators(await bytes('win-reboot-clear.json'))).toEqual({ pending: false, reasons: [] })
  })

  it('accepts RebootRequired, string booleans, a single rename string and empty output', () => {
    expect(
      parseRebootIndicators(
        '{"RebootPending":"False","RebootRequired":"True","PendingFileRenameOperations":"\\\\??\\\\C:\\\\x"}',
      ),
    ).toEqual({ pending: true, reasons: ['wu-reboot-required', 'pending-file-rename'] })
    expect(parseRebootIndicators('{"PendingFileRenameOperations":["",""]}')).toEqual({ pending: false, reasons: [] })
    expect(parseRebootIndicators('')).toEqual({ pending: false, reasons: [] })
  })

  it('parses Win32_OperatingSystem', async () => {
    expect(parseOperatingSystem(await bytes('win-os.json'))).toEqual({
      name: 'Microsoft Windows 11 Pro',
      versionId: '10.0.22631',
      build: '22631',
    })
  })
})

describe('Windows adapter', () => {
  const fixtureRunner = async () => {
    const out: Record<string, Uint8Array> = {
      [WINDOWS_QUERIES.os]: await bytes('win-os.json'),
      [WINDOWS_QUERIES.hotfixes]: await bytes('win-qfe.json'),
      [WINDOWS_QUERIES.uninstall]: await bytes('win-uninstall-utf16le.json'),
      [WINDOWS_QUERIES.reboot]: await bytes('win-reboot-pending.json'),
    }
    const calls: string[] = []
    const runner: CommandRunner = async (command, args) => {
      expect(command).toBe('powershell.exe')
      const script = args[args.length - 1]!
      calls.push(script)
      const o = out[script]
      if (!o) throw new PswError('PSW_ERR_INVENTORY_COMMAND', 'powershell.exe exited with status 1')
      return o
    }
    return { runner, calls, out }
  }

  it('assembles a report that passes the wire schema, and re-queries only after refreshMs', async () => {
    const clock = new ManualClock()
    const { runner, calls } = await fixtureRunner()
    const adapter = createWindowsInventory({ runner, os: winOs, clock, refreshMs: 60_000 })
    const report = await collectInventory({ adapter, installed: async () => [], agentVersion: '0.1.0', clock })
    expect(checkInventoryReport.is(report)).toBe(true)
    expect(report).toMatchObject({
      hostname: 'PC-0042',
      os: {
        platform: 'win32',
        id: 'windows',
        name: 'Microsoft Windows 11 Pro',
        versionId: '10.0.22631',
        kernel: '22631',
      },
      packageManager: 'windows-uninstall',
      reboot: { pending: true },
    })
    expect(report.packages).toHaveLength(6)
    expect(report.hotfixes).toHaveLength(4)
    expect(calls).toHaveLength(4)
    await adapter.collect()
    expect(calls).toHaveLength(4)
    clock.advance(60_000)
    await adapter.collect()
    expect(calls).toHaveLength(8)
  })

  it('keeps what it got when one query fails', async () => {
    const clock = new ManualClock()
    const { runner, out } = await fixtureRunner()
    delete out[WINDOWS_QUERIES.hotfixes]
    const facts = await createWindowsInventory({ runner, os: winOs, clock }).collect()
    expect(facts.hotfixes).toEqual([])
    expect(facts.packages).toHaveLength(6)
    expect(facts.errors).toEqual([expect.objectContaining({ source: 'hotfixes', code: 'PSW_ERR_INVENTORY_COMMAND' })])
  })
})
