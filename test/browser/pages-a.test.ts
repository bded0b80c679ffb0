import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  enroll,
  ingest,
  type RunningAppliance,
  runCli,
  startAppliance,
  tempDir,
  writeRandomFile,
} from '../e2e/harness.ts'
import { buildUi, launchBrowser, openPage, screenshot, type UiPage } from './harness.ts'

/**
 * The Policies, Maintenance windows, Swarm pages and the dashboard summary in a real Chromium
 * against one real appliance process: a group and an auto-approval rule created in the
 * browser, a device tagged into the group, the plan deployed and installed by a real agent, a
 * maintenance window with its calendar across the Europe/Berlin spring-forward night, the
 * swarm per bundle, and the dashboard's summary. Screenshots: dashboard.png, policies.png,
 * windows.png, swarm.png in test-results/screenshots/.
 */
describe('web UI pages: dashboard, policies, windows, swarm (Chromium, real appliance)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let app: RunningAppliance
  let browser: Browser
  let ui: UiPage
  let agentDir: string
  const password = 'correct horse battery staple'
  /** Form controls without a label (every control must have one). */
  const unlabelled = () =>
    ui.page.evaluate(() =>
      Array.from(document.querySelectorAll('input, select, textarea'))
        .filter((e) => (e as HTMLInputElement).labels?.length === 0 && !e.getAttribute('aria-label'))
        .map((e) => e.outerHTML),
    )
  /** Failed requests and console errors, but the 400s provoked on purpose (invalid RRULE, OS glob). */
  const unexpected = (problems: string[]) =>
    problems.filter((p) => !/^HTTP 400 POST .*\/api\/v1\/(windows\/preview|groups)$/.test(p))

  beforeAll(async () => {
    await buildUi()
    dir = await tempDir('ui-pages-a')
    app = await startAppliance(join(dir.path, 'appliance'))
    const line = await app.proc.waitForLine((l) => l.startsWith('setup: '), 'the setup link on stdout')
    const setupLink = line.slice('setup: '.length).trim()
    agentDir = join(dir.path, 'agent1')
    await enroll(app, agentDir, join(dir.path, 'root1'), 'pc-pilot-1')
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

  it('creates a group, tags a device into it and creates an auto-approval rule', async () => {
    const { page } = ui
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Policies', exact: true }).click()
    await page.getByRole('heading', { name: 'Policies', level: 1 }).waitFor()

    await page.getByRole('button', { name: 'New group' }).click()
    await page.getByLabel('Group id').fill('pilot')
    await page.getByLabel('Group name').fill('Pilot devices')
    await page.getByLabel('Has any of these tags').fill('pilot')
    // The server's schema refusal lands next to the field it is about.
    await page.getByLabel(/^OS/).fill('linux!')
    await page.getByRole('button', { name: 'Create group' }).click()
    await page.locator('#ge-os').waitFor()
    expect(await page.locator('#ge-os').textContent()).toMatch(/os/)
    expect(await page.getByLabel(/^OS/).getAttribute('aria-invalid')).toBe('true')
    await page.getByLabel(/^OS/).fill('')
    await page.getByRole('button', { name: 'Create group' }).click()
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /Pilot devices/ }) })
    await row.getByRole('button', { name: '0 devices' }).waitFor()

    // Tag the device: the group's member count follows live.
    await page.getByLabel('Tags of pc-pilot-1').fill('pilot, berlin')
    await page.getByRole('button', { name: 'Save tags and tier of pc-pilot-1' }).click()
    await row.getByRole('button', { name: '1 device' }).waitFor({ timeout: 10_000 })
    await row.getByRole('button', { name: '1 device' }).click()
    await row.getByRole('link', { name: 'pc-pilot-1' }).waitFor()

    await page.getByRole('button', { name: 'New rule' }).click()
    await page.getByLabel('Rule id').fill('all-to-pilot')
    await page.getByLabel('Approve for group').fill('pilot')
    await page.getByLabel('Deadline (days after approval; empty: none)').fill('3')
    await page.getByRole('button', { name: 'Create rule' }).click()
    const rule = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'all-to-pilot' }) })
    await rule.getByRole('cell', { name: 'pilot', exact: true }).waitFor()
    await rule.getByRole('cell', { name: '3 days' }).waitFor()
  })

  it('approves a new patch by the rule, shows the plan and deploys it; the agent installs it', async () => {
    const { page } = ui
    const artifact = join(dir.path, 'vendor-tool.bin')
    await writeRandomFile(artifact, 384 << 10)
    await ingest(app, artifact, 'vendor-tool', '2.1.0', '/opt/vendor')
    // The rule approved it for pilot: the plan shows it without a reload.
    const plan = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'pilot', exact: true }) })
    await plan.getByText('vendor-tool 2.1.0').waitFor({ timeout: 10_000 })

    // One ring, every device, no approval gate.
    await page.getByRole('button', { name: 'Remove ring 3' }).click()
    await page.getByRole('button', { name: 'Remove ring 2' }).click()
    await page.getByLabel('Ring 1 devices').selectOption('rest')
    await page.getByLabel('Ring 1: wait for approval').uncheck()
    await page.getByRole('button', { name: 'Deploy the plan' }).click()
    const result = page.locator('.deploy-result')
    await result.getByRole('link', { name: /from the plan/ }).waitFor({ timeout: 10_000 })
    expect(await result.textContent()).toMatch(/1\s*created,\s*0\s*skipped,\s*0\s*failed/)
    await screenshot(page, 'policies')
    expect(await unlabelled()).toEqual([])

    // Deploying again starts nothing new: the live rollout is reported as skipped.
    await page.getByRole('button', { name: 'Deploy the plan' }).click()
    await result.getByText(/Skipped vendor-tool 2\.1\.0/).waitFor({ timeout: 10_000 })

    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Rollouts', exact: true }).click()
    await page.getByRole('link', { name: /from the plan/ }).click()
    await page.getByRole('cell', { name: 'assigned', exact: true }).waitFor({ timeout: 15_000 })
    const run = await runCli(['agent', 'start', '--data', agentDir, '--once'])
    expect(run.code, run.stderr).toBe(0)
    await page.getByRole('cell', { name: 'installed', exact: true }).waitFor({ timeout: 15_000 })
  })

  it('creates a maintenance window with a calendar preview across the Europe/Berlin DST change', async () => {
    const { page } = ui
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Windows', exact: true }).click()
    await page.getByRole('heading', { name: 'Maintenance windows', level: 1 }).waitFor()
    await page.getByRole('button', { name: 'Add a window to Pilot devices' }).click()
    await page.getByLabel('Window id').fill('sun-night')
    await page.getByLabel('Window name').fill('Sunday night')
    await page.getByLabel('Search time zones').fill('Berlin')
    expect(await page.getByRole('combobox', { name: /^Time zone/ }).inputValue()).toBe('Europe/Berlin')
    await page.getByRole('textbox', { name: /^RRULE/ }).fill('FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0')
    await page.getByLabel('First start (DTSTART, local)').fill('2026-03-01T02:00')
    await page.getByLabel('Duration (minutes, on the wall clock)').fill('120')

    // An invalid rule: the server's reason appears next to the field, and saving is off.
    await page.getByRole('textbox', { name: /^RRULE/ }).fill('FREQ=YEARLY;BYHOUR=2')
    const rruleError = page.locator('#we-rrule')
    await rruleError.waitFor({ timeout: 10_000 })
    expect(await rruleError.textContent()).toMatch(/recurrence|FREQ|YEARLY/i)
    expect(await page.getByRole('button', { name: 'Save window' }).isDisabled()).toBe(true)
    await page.getByRole('textbox', { name: /^RRULE/ }).fill('FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0')
    await rruleError.waitFor({ state: 'detached', timeout: 10_000 })

    // From 2026-03-20: 22 March 02:00 CET, then the spring-forward night (02:00 does not
    // exist: opens 03:00 CEST for one hour), then 02:00 CEST.
    await page.getByLabel('From (date)').fill('2026-03-20')
    await page.getByLabel('How many').fill('4')
    const preview = page.getByTestId('window-preview')
    const dstRow = preview.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /2026-03-29/ }) })
    await dstRow.waitFor({ timeout: 10_000 })
    expect(await dstRow.textContent()).toContain('03:00 UTC+02:00')
    expect(await dstRow.textContent()).toContain('DST')
    expect(await dstRow.textContent()).toContain('1 h (of 2 h)')
    const before = preview.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /2026-03-22/ }) })
    expect(await before.textContent()).toContain('02:00 UTC+01:00')
    await screenshot(page, 'windows')
    expect(await unlabelled()).toEqual([])

    await page.getByRole('button', { name: 'Save window' }).click()
    const saved = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /Sunday night/ }) })
    await saved.getByText('Europe/Berlin').waitFor({ timeout: 10_000 })
    await saved.getByRole('button', { name: 'Edit window sun-night of pilot' }).waitFor()
  })

  it('shows the swarm per bundle', async () => {
    const { page, problems } = ui
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Swarm', exact: true }).click()
    await page.getByRole('heading', { name: 'Swarm', level: 1 }).waitFor()
    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /vendor-tool 2\.1\.0/ }) })
    await row.waitFor({ timeout: 10_000 })
    await expect.poll(() => row.getByRole('cell').first().textContent(), { timeout: 10_000 }).toBe('1')
    await expect.poll(() => page.getByTestId('swarm-delivered').textContent()).not.toBe('0 B')
    await screenshot(page, 'swarm')
    expect(unexpected(problems)).toEqual([])
  })

  it('hides what a viewer may not change', async () => {
    const adminToken = (await readFile(join(app.dataDir, 'admin.token'), 'utf8')).trim()
    const res = await fetch(new URL('/api/v1/users', app.info.httpUrl), {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'viewer', password, role: 'viewer' }),
    })
    expect(res.status, await res.text()).toBe(201)
    const viewer = await openPage(browser)
    try {
      const { page } = viewer
      await page.goto(`${app.info.httpsUrl}/#/policies`)
      await page.getByLabel('User name').fill('viewer')
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', { name: 'Log in' }).click()
      await page.getByRole('rowheader', { name: 'all-to-pilot' }).waitFor()
      await page.getByRole('rowheader', { name: 'pilot', exact: true }).waitFor()
      for (const name of ['New group', 'New rule', 'Deploy the plan', 'Edit group pilot'])
        expect(await page.getByRole('button', { name }).count(), name).toBe(0)
      expect(await page.getByLabel('Tags of pc-pilot-1').count()).toBe(0)
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Windows', exact: true }).click()
      await page.getByRole('rowheader', { name: /Sunday night/ }).waitFor()
      expect(await page.getByRole('button', { name: /Add a window|Edit window/ }).count()).toBe(0)
    } finally {
      await viewer.context.close()
    }
  })

  it('shows the summary on the dashboard', async () => {
    const { page, problems } = ui
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Dashboard', exact: true }).click()
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor()
    await expect.poll(() => page.getByTestId('devices-total').textContent(), { timeout: 10_000 }).toBe('1')
    // The agent installed the plan's only patch: compliant.
    await expect.poll(() => page.getByTestId('compliance-percent').textContent(), { timeout: 10_000 }).toBe('100%')
    await page.getByRole('rowheader', { name: 'pilot', exact: true }).waitFor()
    await expect.poll(() => page.getByTestId('delivered-bytes').textContent()).not.toBe('0 B')
    await page.getByRole('img', { name: /^WAN .* delivered/ }).waitFor()
    await page.getByTestId('bandwidth-saved').waitFor()
    // The plan's rollout soaks after its only ring (30 minutes by default): still active.
    await page
      .getByRole('listitem')
      .getByRole('link', { name: /from the plan/ })
      .waitFor()
    await page.getByRole('progressbar', { name: /1 of 1 installed/ }).waitFor()
    await screenshot(page, 'dashboard')
    expect(unexpected(problems)).toEqual([])
  })
})
