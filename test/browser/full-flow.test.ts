import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CliProcess,
  enroll,
  adminApi as harnessAdminApi,
  ingest,
  type RunningAppliance,
  startAppliance,
  tempDir,
} from '../e2e/harness.ts'
import { buildUi, launchBrowser, openPage, screenshot, type UiPage } from './harness.ts'

/**
 * The whole operator story in one flow, in a real Chromium against a real appliance process
 * and three real agent processes (`agent start --poll-seconds 1`, each with its own install
 * root): first-run setup from the printed link → log out, log in → approve a patch for the
 * agents' group → a maintenance window for that group, open now → a two-ring rollout (pilot:
 * one device, broad: the rest) → the agents install it inside the window while the rollout
 * page follows live → roll it back from the page → the files are restored → the audit log
 * tells the story. Screenshots: flow-01-setup.png … flow-07-audit.png in
 * test-results/screenshots/.
 */

const OLD = 'listen=80\n'
const NEW = 'listen=8080\n'
const NOTES = 'flow-app 2.0: listens on 8080\n'
const GROUP = 'branch'
const GROUP_NAME = 'Branch office'

interface Agent {
  name: string
  dir: string
  root: string
  peerId: string
  proc?: CliProcess
}

describe('full operator flow in the browser: setup → approve → window → two-ring rollout → rollback → audit', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>
  let app: RunningAppliance
  let browser: Browser
  let ui: UiPage
  let setupLink: string
  let bundleId: string
  const agents: Agent[] = []
  const password = 'correct horse battery staple'

  const adminApi = (method: string, path: string, body?: unknown) => harnessAdminApi(app, method, path, body)
  const installed = (a: Agent) => join(a.root, 'opt/flow-app')
  const fileOf = (a: Agent, name: string) => readFile(join(installed(a), name), 'utf8')
  const nav = (page: Page, name: string) =>
    page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true }).click()

  beforeAll(async () => {
    const started = Date.now()
    await buildUi()
    dir = await tempDir('ui-flow')
    app = await startAppliance(join(dir.path, 'appliance'))
    const line = await app.proc.waitForLine((l) => l.startsWith('setup: '), 'the setup link on stdout')
    setupLink = line.slice('setup: '.length).trim()
    // Three devices, each with the version before the patch, which the rollback must bring back.
    const enrolled = Promise.all(
      [1, 2, 3].map(async (i) => {
        const root = join(dir.path, `root-${i}`)
        await mkdir(join(root, 'opt/flow-app'), { recursive: true })
        await writeFile(join(root, 'opt/flow-app/app.conf'), OLD)
        const agentDir = join(dir.path, `agent-${i}`)
        const name = `pc-flow-${i}`
        return { name, dir: agentDir, root, peerId: await enroll(app, agentDir, root, name) }
      }),
    )
    // The patch's content (the operator's part, approving and rolling out, is in the browser).
    const source = join(dir.path, 'flow-app')
    await mkdir(source)
    await writeFile(join(source, 'app.conf'), NEW)
    await writeFile(join(source, 'NOTES.txt'), NOTES)
    const ingested = ingest(app, source, 'flow-app', '2.0', '/opt/flow-app')
    const [list, { record }] = await Promise.all([enrolled, ingested])
    agents.push(...list)
    bundleId = record.bundleId
    // The agents' group (by host name).
    await adminApi('POST', '/api/v1/groups', {
      id: GROUP,
      name: GROUP_NAME,
      match: { hostnamePattern: 'pc-flow-*' },
    })
    browser = await launchBrowser()
    ui = await openPage(browser)
    console.info(`full-flow: setup took ${Date.now() - started} ms`)
  }, 120_000)

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.proc?.stop()))
    await browser?.close()
    await app?.proc.stop()
    await dir?.cleanup()
  })

  it('runs the operator story end to end against real agents', async () => {
    const { page, problems } = ui
    const t0 = Date.now()
    const step = (what: string) => console.info(`full-flow: ${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`)

    // 1. First-run setup from the printed link, then log out and in again.
    await page.goto(setupLink)
    await page.getByRole('heading', { name: 'Set up this appliance' }).waitFor()
    await page.getByLabel('User name').fill('admin')
    await page.getByLabel('Password', { exact: false }).first().fill(password)
    await page.getByLabel('Password again').fill(password)
    await screenshot(page, 'flow-01-setup')
    await page.getByRole('button', { name: 'Create administrator' }).click()
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
    await page.getByRole('button', { name: 'Log out' }).click()
    await page.getByRole('heading', { name: 'Log in to patchswarm' }).waitFor()
    await page.getByLabel('User name').fill('admin')
    await page.getByLabel('Password').fill(password)
    await page.getByRole('button', { name: 'Log in' }).click()
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor()
    await page.getByRole('status').filter({ hasText: 'Live' }).waitFor()
    await expect.poll(() => page.getByTestId('devices-total').textContent(), { timeout: 10_000 }).toBe('3')
    await screenshot(page, 'flow-02-dashboard')
    step('setup and login done')

    // 2. Approve the patch for the agents' group.
    await nav(page, 'Patches')
    await page.getByRole('heading', { name: 'Patches', exact: true }).waitFor()
    const patchRow = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /flow-app 2\.0/ }) })
    await patchRow.waitFor()
    await patchRow.getByLabel('Group for flow-app 2.0').selectOption(GROUP)
    await patchRow.getByRole('button', { name: 'Approve' }).click()
    await expect
      .poll(() => patchRow.getByRole('listitem').textContent(), { timeout: 10_000 })
      .toMatch(new RegExp(`^approve ${GROUP} by (operator:)?admin`))
    await screenshot(page, 'flow-03-approve')
    step('patch approved')

    // 3. A maintenance window for the group, open now: every day from 00:00 UTC for 24 h.
    await nav(page, 'Windows')
    await page.getByRole('heading', { name: 'Maintenance windows', level: 1 }).waitFor()
    await page.getByRole('button', { name: `Add a window to ${GROUP_NAME}` }).click()
    await page.getByLabel('Window id').fill('all-day')
    await page.getByLabel('Window name').fill('All day, every day')
    await page.getByRole('combobox', { name: /^Time zone/ }).selectOption('UTC')
    await page.getByRole('radio', { name: 'cron' }).check()
    await page.getByRole('textbox', { name: /^cron/ }).fill('0 0 * * *')
    await page.getByLabel('Duration (minutes, on the wall clock)').fill('1440')
    // The preview's first occurrence is today's, open since 00:00 UTC: the window is open now.
    const today = new Date().toISOString().slice(0, 10)
    const preview = page.getByTestId('window-preview')
    const current = preview.getByRole('row').filter({ has: page.getByRole('rowheader', { name: new RegExp(today) }) })
    await current.waitFor({ timeout: 10_000 })
    expect(await current.textContent()).toContain('00:00 UTC+00:00')
    expect(await current.textContent()).toContain('24 h')
    await screenshot(page, 'flow-04-window')
    // The appliance signs the group's windows into its devices' assignments as soon as the
    // group changes: watch for it from here.
    const windowLogsBefore = app.proc.lines.length
    const windowsDelivered = app.proc.waitForLine(
      (l) =>
        app.proc.lines.indexOf(l) >= windowLogsBefore &&
        l.includes('"msg":"maintenance windows re-issued to devices"') &&
        l.includes('"devices":3'),
      'the window in the devices’ assignments',
      45_000,
    )
    windowsDelivered.catch(() => {}) // awaited below
    await page.getByRole('button', { name: 'Save window' }).click()
    const saved = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /All day, every day/ }) })
    await saved.getByText('cron 0 0 * * *').waitFor({ timeout: 10_000 })
    await saved.getByText('UTC', { exact: true }).waitFor()
    step('window saved')

    // 4. A two-ring rollout: pilot = one device, broad = the rest; no soak, no approval gate.
    await nav(page, 'Rollouts')
    await page.getByRole('heading', { name: 'Rollouts' }).waitFor()
    await page.getByRole('link', { name: 'New rollout' }).click()
    await page.getByLabel('Patch').selectOption({ index: 1 })
    await page.getByLabel('Rollout id').fill('flow-app-2')
    await page.getByLabel('Rollout name').fill('flow-app 2.0 to the branch')
    await page.getByLabel(/^Target groups/).fill(GROUP)
    await page.getByLabel('Retries per device').fill('0')
    await page.getByRole('button', { name: 'Remove ring 3' }).click()
    const ring1 = page.getByRole('group', { name: 'Ring 1', exact: true })
    await ring1.getByLabel('Ring name').fill('pilot')
    await ring1.getByLabel('Devices').selectOption('count')
    await ring1.getByLabel('Count').fill('1')
    await ring1.getByLabel('Success threshold (%)').fill('100')
    await ring1.getByLabel('Error threshold (%)').fill('0')
    await ring1.getByLabel('Soak (minutes)').fill('0')
    await ring1.getByLabel('Wait for approval before the next ring').uncheck()
    const ring2 = page.getByRole('group', { name: 'Ring 2', exact: true })
    await ring2.getByLabel('Ring name').fill('broad')
    await ring2.getByLabel('Devices').selectOption('rest')
    await ring2.getByLabel('Success threshold (%)').fill('100')
    await ring2.getByLabel('Error threshold (%)').fill('50')
    await ring2.getByLabel('Soak (minutes)').fill('0')
    await ring2.getByLabel('Wait for approval before the next ring').uncheck()
    await page.getByRole('button', { name: 'Create rollout' }).click()
    await page.getByRole('heading', { name: 'flow-app 2.0 to the branch' }).waitFor()
    expect(page.url()).toMatch(/#\/rollouts\/flow-app-2$/)
    const status = page.locator('span.status[role="status"]')
    await expect.poll(() => status.textContent()).toBe('active')
    const ringRow = (name: string) =>
      page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: new RegExp(`^\\d\\. ${name}$`) }) })
    await expect.poll(() => ringRow('pilot').getByRole('cell').nth(1).textContent()).toBe('deploying')
    await expect.poll(() => ringRow('broad').getByRole('cell').nth(1).textContent()).toBe('pending')
    await page.getByRole('cell', { name: 'assigned', exact: true }).first().waitFor({ timeout: 10_000 })
    // From here on the page must follow by itself: a reload would lose this mark.
    await page.evaluate(() => {
      ;(window as unknown as { flowMark?: boolean }).flowMark = true
    })
    const stillSamePage = () => page.evaluate(() => (window as unknown as { flowMark?: boolean }).flowMark === true)
    step('rollout created')

    // 5. The window has reached the devices' assignments: start the agents; they install
    // inside the window (not "any time"), and the page follows without a reload.
    await windowsDelivered
    step('window delivered')
    for (const a of agents)
      a.proc = new CliProcess(['agent', 'start', '--data', a.dir, '--poll-seconds', '1', '--no-mdns'])
    await page.getByRole('cell', { name: 'installed', exact: true }).first().waitFor({ timeout: 20_000 })
    await screenshot(page, 'flow-05-rollout-live')
    await expect.poll(() => status.textContent(), { timeout: 30_000 }).toBe('completed')
    expect(await ringRow('pilot').getByRole('cell').nth(1).textContent()).toBe('passed')
    expect(await ringRow('broad').getByRole('cell').nth(1).textContent()).toBe('passed')
    await expect.poll(() => page.getByRole('cell', { name: 'installed', exact: true }).count()).toBe(3)
    for (const a of agents) {
      const log = await a.proc!.waitForLog('installing inside the window', (e) => e.reason !== 'no-windows', 5_000)
      expect(log.reason, a.name).toBeDefined()
      expect(await fileOf(a, 'app.conf'), a.name).toBe(NEW)
      expect(await fileOf(a, 'NOTES.txt'), a.name).toBe(NOTES)
    }
    step('rollout completed')

    // 6. Roll it back from the page (inside the window, not an emergency).
    await page.getByRole('button', { name: 'Roll back' }).click()
    // (Not by its accessible name: ConfirmButton's aria-labelledby is "dlg-Roll back", two ids.)
    const dialog = page.getByRole('dialog').filter({ hasText: 'Roll back this patch everywhere?' })
    await dialog.getByLabel(/^Reason/).fill('flow-app 2.0 breaks the branch printers')
    await dialog.getByRole('button', { name: 'Roll back' }).click()
    await dialog.waitFor({ state: 'hidden' })
    await expect.poll(() => status.textContent(), { timeout: 30_000 }).toBe('rolled-back')
    await page.getByText(/by admin .* — flow-app 2\.0 breaks the branch printers/).waitFor()
    await screenshot(page, 'flow-06-rolled-back')
    expect(await stillSamePage(), 'the rollout page was reloaded').toBe(true)
    for (const a of agents) {
      expect(await fileOf(a, 'app.conf'), a.name).toBe(OLD)
      expect(existsSync(join(installed(a), 'NOTES.txt')), a.name).toBe(false)
    }
    step('rolled back')

    // 7. The audit log tells the story, the group and its window included.
    await nav(page, 'Audit')
    await page.getByRole('heading', { name: 'Audit', exact: true }).waitFor()
    for (const action of [
      'auth.setup',
      'auth.logout',
      'auth.login',
      'bundle.ingest',
      'patch.approve',
      'group.create',
      'group.update',
      'rollout.create',
      'rollout.ring',
      'rollout.device',
      'rollout.rollback',
      'rollout.status',
    ])
      await page.getByRole('rowheader', { name: action, exact: true }).first().waitFor({ timeout: 10_000 })
    const approval = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'patch.approve' }) })
    expect(await approval.textContent()).toContain(bundleId)
    const rollback = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'rollout.rollback' }) })
    expect(await rollback.textContent()).toContain('flow-app 2.0 breaks the branch printers')
    await page.getByRole('button', { name: 'Verify chain' }).click()
    await page.getByText('Chain intact:').waitFor()
    await screenshot(page, 'flow-07-audit')
    // The same records through the API: the rollout's status transitions in order.
    const audit = (await (await adminApi('GET', '/api/v1/audit?limit=500&order=asc')).json()) as {
      records: Array<{ action: string; after?: Record<string, unknown> }>
    }
    expect(audit.records.filter((r) => r.action === 'rollout.status').map((r) => r.after?.status)).toEqual([
      'completed',
      'rolling-back',
      'rolled-back',
    ])
    step('audit checked')
    // The only failed request: the session check on the login page after logging out.
    expect(problems.filter((p) => !/^HTTP 401 GET .*\/api\/v1\/auth\/session$/.test(p))).toEqual([])
  }, 150_000)
})
