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
 * The web UI in a real Chromium against a real appliance process (HTTPS listener, the
 * appliance's own web certificate): first-run setup from the printed link, the dashboard,
 * every page, a rollout created in the browser and its progress arriving live while an agent
 * installs, logout and login. Screenshots of every page land in test-results/screenshots/.
 */
describe('web UI smoke test (Chromium, real appliance)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let app: RunningAppliance
  let browser: Browser
  let ui: UiPage
  let setupLink: string
  let peerId: string
  const password = 'correct horse battery staple'

  beforeAll(async () => {
    await buildUi()
    dir = await tempDir('ui')
    app = await startAppliance(join(dir.path, 'appliance'))
    const line = await app.proc.waitForLine((l) => l.startsWith('setup: '), 'the setup link on stdout')
    setupLink = line.slice('setup: '.length).trim()
    browser = await launchBrowser()
    ui = await openPage(browser)
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await app?.proc.stop()
    await dir?.cleanup()
  })

  it('prints a setup link to the HTTPS web UI', () => {
    expect(setupLink).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/#\/setup\?token=[A-Za-z0-9_-]+$/)
  })

  it('creates the first admin from the setup link and shows the dashboard', async () => {
    const { page } = ui
    await page.goto(setupLink)
    await page.getByRole('heading', { name: 'Set up this appliance' }).waitFor()
    expect(await page.getByLabel('Setup token').inputValue()).toBe(new URL(setupLink).hash.split('token=')[1])
    await screenshot(page, 'setup')
    await page.getByLabel('User name').fill('admin')
    await page.getByLabel('Password', { exact: false }).first().fill(password)
    await page.getByLabel('Password again').fill(password)
    await page.getByRole('button', { name: 'Create administrator' }).click()
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
    expect(page.url()).toMatch(/#\/dashboard$/)
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor()
    await expect.poll(() => page.getByText('admin (admin)').count()).toBe(1)
    await screenshot(page, 'dashboard-empty')
  })

  it('updates the dashboard live when a patch is ingested', async () => {
    const { page } = ui
    const artifact = join(dir.path, 'vendor-patch.bin')
    await writeRandomFile(artifact, 256 << 10)
    await ingest(app, artifact, 'vendor-patch', '1.0.0', '/opt/vendor')
    peerId = await enroll(app, join(dir.path, 'agent1'), join(dir.path, 'root1'), 'pc-ui-1')
    // No reload: the event stream tells the page, which refetches.
    await expect.poll(() => page.getByTestId('devices-total').textContent(), { timeout: 10_000 }).toBe('1')
    await expect.poll(() => page.getByTestId('devices-offline').textContent(), { timeout: 10_000 }).toBe('1')
    // dashboard.png is the populated dashboard of pages-a.test.ts.
    await screenshot(page, 'dashboard-smoke')
  })

  it('lists devices and shows a device', async () => {
    const { page } = ui
    await page.getByRole('link', { name: 'Devices', exact: true }).click()
    await page.getByRole('heading', { name: 'Devices' }).waitFor()
    await page.getByLabel('Search devices').fill('pc-ui')
    await page.getByRole('link', { name: 'pc-ui-1' }).waitFor()
    await screenshot(page, 'devices')
    await page.getByRole('link', { name: 'pc-ui-1' }).click()
    await page.getByRole('heading', { name: 'pc-ui-1' }).waitFor()
    await page.getByText(peerId).waitFor()
    await screenshot(page, 'device-detail')
  })

  it('shows the patch catalog with decisions per group', async () => {
    const { page } = ui
    await page.getByRole('link', { name: 'Patches', exact: true }).click()
    await page.getByRole('heading', { name: 'Patches', exact: true }).waitFor()
    await page.getByRole('rowheader', { name: /vendor-patch 1\.0\.0/ }).waitFor()
    // An operator action through the session: JSON, the CSRF header, same origin.
    await page.getByRole('button', { name: 'Approve' }).click()
    await page.getByText('approve all groups').waitFor({ timeout: 10_000 })
    await screenshot(page, 'patches')
  })

  it('creates a rollout in the browser and follows its progress live', async () => {
    const { page, problems } = ui
    await page.getByRole('link', { name: 'Rollouts' }).click()
    await page.getByRole('heading', { name: 'Rollouts' }).waitFor()
    await page.getByRole('link', { name: 'New rollout' }).click()
    await page.getByLabel('Patch').selectOption({ index: 1 })
    await page.getByLabel('Rollout id').fill('ui-smoke')
    await page.getByLabel('Rollout name').fill('UI smoke rollout')
    // One ring: everything.
    await page.getByRole('button', { name: 'Remove ring 3' }).click()
    await page.getByRole('button', { name: 'Remove ring 2' }).click()
    await page.getByLabel('Devices').selectOption('rest')
    await page.getByLabel('Wait for approval before the next ring').uncheck()
    await screenshot(page, 'rollout-create')
    await page.getByRole('button', { name: 'Create rollout' }).click()
    await page.getByRole('heading', { name: 'UI smoke rollout' }).waitFor()
    expect(page.url()).toMatch(/#\/rollouts\/ui-smoke$/)
    await page.getByRole('cell', { name: 'assigned', exact: true }).waitFor({ timeout: 15_000 })
    // The agent installs; the page learns it from the event stream.
    const run = await runCli(['agent', 'start', '--data', join(dir.path, 'agent1'), '--once'])
    expect(run.code, run.stderr).toBe(0)
    await page.getByRole('cell', { name: 'installed', exact: true }).waitFor({ timeout: 15_000 })
    await screenshot(page, 'rollout-detail')
    await page.getByRole('link', { name: '← Rollouts' }).click()
    await page.getByRole('link', { name: 'UI smoke rollout' }).waitFor()
    await screenshot(page, 'rollouts')
    expect(problems).toEqual([])
  })

  it('works at a narrow width', async () => {
    const { page } = ui
    await page.setViewportSize({ width: 390, height: 844 })
    await page.getByRole('link', { name: 'Dashboard' }).click()
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
    await screenshot(page, 'dashboard-narrow')
    await page.setViewportSize({ width: 1280, height: 800 })
  })

  it('is keyboard usable: the skip link comes first and moves focus to the content', async () => {
    const { page } = ui
    await page.getByRole('link', { name: 'Patches', exact: true }).click()
    await page.getByRole('heading', { name: 'Patches', exact: true }).waitFor()
    // A fresh load: the first Tab reaches the skip link.
    await page.reload()
    await page.getByRole('heading', { name: 'Patches', exact: true }).waitFor()
    await page.keyboard.press('Tab')
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content')
    await page.keyboard.press('Enter')
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('main')
    // Navigating moves focus to the new page's heading.
    await page.getByRole('link', { name: 'Devices', exact: true }).press('Enter')
    await page.getByRole('heading', { name: 'Devices' }).waitFor()
    await expect.poll(() => page.evaluate(() => document.activeElement?.tagName)).toBe('H1')
    // Every form control has a label.
    const unlabelled = await page.evaluate(() =>
      Array.from(document.querySelectorAll('input, select, textarea'))
        .filter((e) => (e as HTMLInputElement).labels?.length === 0 && !e.getAttribute('aria-label'))
        .map((e) => e.outerHTML),
    )
    expect(unlabelled).toEqual([])
  })

  it('hides what a viewer may not do', async () => {
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
      await page.goto(`${app.info.httpsUrl}/#/patches`)
      await page.getByRole('heading', { name: 'Log in to patchswarm' }).waitFor()
      await page.getByLabel('User name').fill('viewer')
      await page.getByLabel('Password').fill(password)
      await page.getByRole('button', { name: 'Log in' }).click()
      // Back where the login interrupted: the patches, without the operator's buttons.
      await page.getByRole('rowheader', { name: /vendor-patch 1\.0\.0/ }).waitFor()
      expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0)
      await page.getByRole('link', { name: 'Rollouts' }).click()
      await page.getByRole('link', { name: 'UI smoke rollout' }).click()
      await page.getByRole('heading', { name: 'UI smoke rollout' }).waitFor()
      expect(await page.getByRole('button', { name: 'Pause' }).count()).toBe(0)
      expect(await page.getByRole('button', { name: 'Roll back' }).count()).toBe(0)
      await screenshot(page, 'rollout-detail-viewer')
      // Before the login: the session check's 401, nothing else.
      expect(viewer.problems).toEqual([expect.stringMatching(/^HTTP 401 GET .*\/api\/v1\/auth\/session$/)])
    } finally {
      await viewer.context.close()
    }
  })

  it('logs out, refuses a wrong password with the API’s message, logs in again', async () => {
    const { page, problems } = ui
    await page.getByRole('button', { name: 'Log out' }).click()
    await page.getByRole('heading', { name: 'Log in to patchswarm' }).waitFor()
    await page.getByLabel('User name').fill('admin')
    await page.getByLabel('Password').fill('not the password at all')
    await page.getByRole('button', { name: 'Log in' }).click()
    await page.getByRole('alert').filter({ hasText: 'wrong user name or password' }).waitFor()
    await screenshot(page, 'login-failed')
    await page.getByLabel('Password').fill(password)
    await page.getByRole('button', { name: 'Log in' }).click()
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
    // The failed login's 401 is the only failed request.
    expect(problems).toEqual([expect.stringMatching(/^HTTP 401 POST .*\/api\/v1\/auth\/login$/)])
  })
})
