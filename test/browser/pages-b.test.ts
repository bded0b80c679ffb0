import { createHash, X509Certificate } from 'node:crypto'
import { mkdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  enroll,
  adminApi as harnessAdminApi,
  ingest,
  REPO,
  type RunningAppliance,
  runCli,
  startAppliance,
  tempDir,
  writeRandomFile,
} from '../e2e/harness.ts'
import { buildUi, launchBrowser, openPage, screenshot, type UiPage } from './harness.ts'

/**
 * The Audit, Reports and Settings pages in a real Chromium against a real appliance process:
 * the audit log with its chain check, the compliance report with its CSV and a PDF of the
 * print view, and the admin's settings (WAN cap, accounts, API and enrollment tokens, the
 * web certificate). Screenshots land in test-results/screenshots/, the PDF in test-results/.
 */
describe('web UI: Audit, Reports, Settings (Chromium, real appliance)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let app: RunningAppliance
  let browser: Browser
  let ui: UiPage
  const password = 'correct horse battery staple'

  const adminApi = (method: string, path: string, body?: unknown) => harnessAdminApi(app, method, path, body)

  /** Form controls without a label (every one must have one). */
  const unlabelled = () =>
    ui.page.evaluate(() =>
      Array.from(document.querySelectorAll('input, select, textarea'))
        .filter((e) => (e as HTMLInputElement).labels?.length === 0 && !e.getAttribute('aria-label'))
        .map((e) => e.outerHTML),
    )

  beforeAll(async () => {
    await buildUi()
    dir = await tempDir('ui-b')
    app = await startAppliance(join(dir.path, 'appliance'))
    const line = await app.proc.waitForLine((l) => l.startsWith('setup: '), 'the setup link on stdout')
    const setupLink = line.slice('setup: '.length).trim()
    // Something to report on: a patch approved for every group and a device that lacks it.
    const artifact = join(dir.path, 'vendor-patch.bin')
    await writeRandomFile(artifact, 64 << 10)
    const { record } = await ingest(app, artifact, 'vendor-patch', '2.0.0', '/opt/vendor')
    const peerId = await enroll(app, join(dir.path, 'agent1'), join(dir.path, 'root1'), 'pc-report-1')
    await adminApi('PUT', `/api/v1/devices/${peerId}/tags`, { tags: ['office'] })
    await adminApi('POST', `/api/v1/patches/${record.bundleId}/approve`, { group: 'office' })
    browser = await launchBrowser()
    ui = await openPage(browser)
    const { page } = ui
    await page.goto(setupLink)
    await page.getByLabel('User name').fill('admin')
    await page.getByLabel('Password', { exact: false }).first().fill(password)
    await page.getByLabel('Password again').fill(password)
    await page.getByRole('button', { name: 'Create administrator' }).click()
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor()
  }, 180_000)

  afterAll(async () => {
    await browser?.close()
    await app?.proc.stop()
    await dir?.cleanup()
  })

  it('audit: shows the records, filters them, verifies the chain, and shows new records live', async () => {
    const { page } = ui
    await page.getByRole('link', { name: 'Audit', exact: true }).click()
    await page.getByRole('heading', { name: 'Audit', exact: true }).waitFor()
    await page.getByRole('rowheader', { name: 'bundle.ingest' }).waitFor()
    // Before/after, readable.
    await page
      .getByText(/^Values \(/)
      .or(page.getByText(/^Before and after/))
      .first()
      .click()
    // The chain check.
    await page.getByRole('button', { name: 'Verify chain' }).click()
    await page.getByText('Chain intact:').waitFor()
    // Export links carry the filters.
    const csv = await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href')
    expect(csv).toBe('/api/v1/audit/export?format=csv')
    // A filter.
    await page.getByLabel('Action').fill('bundle')
    await page.getByRole('button', { name: 'Apply filters' }).click()
    await expect.poll(() => page.getByRole('rowheader', { name: 'auth.login' }).count()).toBe(0)
    await page.getByRole('rowheader', { name: 'bundle.ingest' }).waitFor()
    expect(await page.getByRole('link', { name: 'Export JSONL' }).getAttribute('href')).toBe(
      '/api/v1/audit/export?action=bundle&format=jsonl',
    )
    await page.getByRole('button', { name: 'Clear' }).click()
    // Live: a record written elsewhere appears without a reload.
    await adminApi('POST', '/api/v1/api-tokens', { name: 'live-audit-probe', role: 'viewer' })
    await page.getByRole('rowheader', { name: 'api-token.create' }).waitFor({ timeout: 10_000 })
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'api-token.create' }) })
    await row.getByText(/^Values \(/).click()
    await row.getByRole('rowheader', { name: 'name' }).waitFor()
    await row.getByRole('cell', { name: 'live-audit-probe' }).waitFor()
    await screenshot(page, 'audit')
    expect(await unlabelled()).toEqual([])
  })

  it('reports: summary, per-device table, a CSV download and a PDF of the print view', async () => {
    const { page } = ui
    await page.getByRole('link', { name: 'Reports', exact: true }).click()
    await page.getByRole('heading', { name: 'Reports', exact: true }).waitFor()
    await expect.poll(() => page.getByTestId('compliance-percent').textContent()).toBe('0%')
    await page.getByRole('rowheader', { name: /pc-report-1/ }).waitFor()
    await page.getByText('vendor-patch 2.0.0').waitFor()
    await page.getByLabel('Only devices that miss patches').check()
    await page.getByRole('rowheader', { name: /pc-report-1/ }).waitFor()
    await page.getByLabel('Only devices that miss patches').uncheck()
    await screenshot(page, 'reports')
    expect(await unlabelled()).toEqual([])

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download CSV' }).click(),
    ])
    expect(download.suggestedFilename()).toMatch(/^patchswarm-compliance-\d{4}-\d{2}-\d{2}\.csv$/)
    const csvPath = join(REPO, 'test-results', 'compliance.csv')
    await download.saveAs(csvPath)
    const csv = await readFile(csvPath, 'utf8')
    expect(csv).toContain('pc-report-1')
    expect(csv.split('\n')[0]).toMatch(/,/)

    // The printable page: print media hides the navigation and shows the report header.
    await page.emulateMedia({ media: 'print' })
    expect(await page.locator('header.top').isVisible()).toBe(false)
    expect(await page.getByRole('button', { name: 'Print / Save as PDF' }).isVisible()).toBe(false)
    await page.getByText(/patchswarm compliance report/).waitFor()
    await page.getByText(/by admin/).waitFor()
    await screenshot(page, 'reports-print')
    await mkdir(join(REPO, 'test-results'), { recursive: true })
    const pdfPath = join(REPO, 'test-results', 'compliance-report.pdf')
    await page.pdf({ path: pdfPath, format: 'A4', printBackground: true })
    const pdf = await readFile(pdfPath)
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-')
    expect((await stat(pdfPath)).size).toBeGreaterThan(1000)
    await page.emulateMedia({ media: 'screen' })
  })

  it('settings: a refused value shows the server’s message at its field; the WAN cap is saved and kept after a reload', async () => {
    const { page } = ui
    await page.getByRole('link', { name: 'Settings', exact: true }).click()
    await page.getByRole('heading', { name: 'Settings', exact: true }).waitFor()
    // A value only the server can refuse: its message is shown next to the field.
    const zone = page.getByLabel('Time zone of the schedule', { exact: false })
    await zone.fill('Mars/Olympus_Mons')
    await page.getByRole('button', { name: 'Save upstream settings' }).click()
    await page
      .locator('label')
      .filter({ has: zone })
      .getByRole('alert')
      .filter({ hasText: 'unknown time zone Mars/Olympus_Mons' })
      .waitFor()
    await zone.fill('UTC')
    const cap = page.getByLabel('Default WAN cap (bytes per second, 0 = unlimited)')
    await cap.fill('250000')
    await page.getByRole('button', { name: 'Add rule' }).click()
    await page.getByRole('button', { name: 'Add folder feed' }).click()
    await page.getByLabel('Feed id').fill('usb-stick')
    await page.getByLabel('Folder (absolute path holding feed.json)').fill(dir.path)
    await page.getByRole('button', { name: 'Save upstream settings' }).click()
    await page.getByText(/^Saved at/).waitFor()
    await page.reload()
    await page.getByRole('heading', { name: 'Settings', exact: true }).waitFor()
    await expect.poll(() => cap.inputValue()).toBe('250000')
    expect(await page.getByRole('group', { name: 'Rule 1' }).count()).toBe(1)
    const settings = (await (await adminApi('GET', '/api/v1/settings')).json()) as {
      upstream: {
        feeds: Array<{ id: string; kind: string; path?: string }>
        wan: { schedule: { defaultBytesPerSecond: number; rules: unknown[] } }
      }
    }
    expect(settings.upstream.wan.schedule.defaultBytesPerSecond).toBe(250000)
    expect(settings.upstream.wan.schedule.rules).toHaveLength(1)
    expect(settings.upstream.feeds).toEqual([{ id: 'usb-stick', kind: 'folder', path: dir.path }])
    expect(await page.getByLabel('Feed id').inputValue()).toBe('usb-stick')
    // Sync now: the folder has no feed.json, and the page says so.
    await page.getByRole('button', { name: 'Sync now' }).click()
    await page.getByText(/^usb-stick: /).waitFor({ timeout: 15_000 })
  })

  it('settings: creates a user and an API token whose secret is shown once', async () => {
    const { page } = ui
    await page.getByLabel('New user name').fill('auditor')
    await page.getByRole('form', { name: 'New account' }).getByRole('combobox').selectOption('viewer')
    await page.getByLabel('Initial password (12 to 256 characters)').fill('another long password 42')
    await page.getByRole('button', { name: 'Create account' }).click()
    await page.getByRole('rowheader', { name: 'auditor' }).waitFor()
    await page.getByLabel('Role of auditor').selectOption('operator')
    await expect
      .poll(async () => {
        const users = (await (await adminApi('GET', '/api/v1/users')).json()) as {
          users: Array<{ username: string; role: string }>
        }
        return users.users.find((u) => u.username === 'auditor')?.role
      })
      .toBe('operator')

    await page.getByLabel('Token name').fill('msp-monitoring')
    await page.getByLabel('Token role').selectOption('viewer')
    await page.getByRole('button', { name: 'Create API token' }).click()
    const secret = page.getByRole('textbox', { name: 'Secret of the API token msp-monitoring' })
    await secret.waitFor()
    const token = await secret.inputValue()
    expect(token).toMatch(/^psw_[0-9a-f]{16}_/)
    await page.getByRole('rowheader', { name: /msp-monitoring/ }).waitFor()
    // The secret works, and the list never shows it.
    const res = await fetch(new URL('/api/v1/patches', app.info.httpUrl), {
      headers: { authorization: `Bearer ${token}` },
    })
    expect(res.status).toBe(200)
    const list = await (await adminApi('GET', '/api/v1/api-tokens')).text()
    expect(list).not.toContain(token.split('_')[2])
    // Shown once: gone after a reload.
    await page.reload()
    await page.getByRole('rowheader', { name: /msp-monitoring/ }).waitFor()
    expect(await page.getByRole('textbox', { name: 'Secret of the API token msp-monitoring' }).count()).toBe(0)
  })

  it('settings: an enrollment token comes with a ready-to-paste enroll command', async () => {
    const { page } = ui
    await page.getByLabel('Label (optional, e.g. the device)').fill('pc-new')
    await page.getByRole('button', { name: 'Create enrollment token' }).click()
    const command = await page.getByRole('textbox', { name: 'Enroll command' }).inputValue()
    expect(command).toMatch(
      /^patchswarm agent enroll --appliance https:\/\/\S+ --token pst_\S+ --root-fingerprint \S+ --web-ca-fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2} /,
    )
    expect(command).toContain(app.info.webCaFingerprint256!)
    // The CLI gives the same facts (`patchswarm appliance token --json`).
    const cli = await runCli(['appliance', 'token', '--data', app.dataDir, '--json'])
    expect(cli.code, cli.stderr).toBe(0)
    expect(JSON.parse(cli.stdout)).toMatchObject({
      token: expect.stringMatching(/^pst_/),
      webCaFingerprint256: app.info.webCaFingerprint256,
      httpsUrl: app.info.httpsUrl,
    })
  })

  it('settings: the certificate section shows the fingerprint of /ca.crt and renews', async () => {
    const { page, problems } = ui
    const shown = (await page.getByTestId('ca-fingerprint').textContent())?.trim()
    const pem = await (await fetch(new URL('/ca.crt', app.info.httpUrl))).text()
    const fingerprint = createHash('sha256')
      .update(new X509Certificate(pem).raw)
      .digest('hex')
      .toUpperCase()
      .match(/../g)!
      .join(':')
    expect(shown).toBe(fingerprint)
    expect(await page.getByRole('link', { name: 'Download the web CA (ca.crt)' }).getAttribute('href')).toBe('/ca.crt')
    const before = await page
      .locator('dd')
      .filter({ hasText: /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/ })
      .last()
      .textContent()
    await page.getByRole('button', { name: 'Renew now' }).click()
    await page.getByRole('dialog').getByRole('button', { name: 'Renew' }).click()
    await page.getByText(/^Renewed: valid until/).waitFor({ timeout: 15_000 })
    await expect
      .poll(() =>
        page
          .locator('dd')
          .filter({ hasText: /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/ })
          .last()
          .textContent(),
      )
      .not.toBe(before)
    await screenshot(page, 'settings')
    expect(await unlabelled()).toEqual([])
    // The only failed request: the save the server refused on purpose.
    expect(problems).toEqual([expect.stringMatching(/^HTTP 400 PUT .*\/api\/v1\/settings\/upstream$/)])
  })

  it('settings: a viewer sees a notice instead', async () => {
    await adminApi('POST', '/api/v1/users', { username: 'viewer', password, role: 'viewer' })
    const viewer = await openPage(browser)
    try {
      const { page } = viewer
      await page.goto(`${app.info.httpsUrl}/#/settings`)
      await page.getByLabel('User name').fill('viewer')
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', { name: 'Log in' }).click()
      await page.getByRole('heading', { name: 'Settings', exact: true }).waitFor()
      await page.getByText('Settings are for administrators').waitFor()
      expect(await page.getByRole('button', { name: 'Save upstream settings' }).count()).toBe(0)
    } finally {
      await viewer.context.close()
    }
  })
})
