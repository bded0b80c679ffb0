import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { REPO } from '../e2e/harness.ts'

/**
 * Browser tests: a real Chromium (the distribution's package, driven by playwright-core) against
 * a real appliance process. CI installs `chromium` (.ci/run); elsewhere set CHROMIUM_PATH.
 * A missing browser fails the test with what to do: it is never skipped silently.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
export const SCREENSHOTS = join(REPO, 'test-results', 'screenshots')

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}: install it (apt-get install chromium, as .ci/run does) or set CHROMIUM_PATH to its executable`,
    )
  }
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    // playwright-core adds --headless, --no-sandbox (chromiumSandbox: false), --no-first-run, …
    args: ['--disable-gpu', '--disable-quic', '--disable-sync'],
  })
}

export interface UiPage {
  context: BrowserContext
  page: Page
  /** Console errors (CSP violations among them), page errors and failed requests seen so far. */
  problems: string[]
}

/** A fresh context (own cookies) at 1280×800 that trusts the appliance's test certificate. */
export async function openPage(
  browser: Browser,
  viewport: { width: number; height: number } = { width: 1280, height: 800 },
): Promise<UiPage> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('console', (m) => {
    // Failed requests are reported below, with their URL.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`)
  })
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.request().method()} ${r.url()}`)
  })
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  return { context, page, problems }
}

/** A full-page PNG in test-results/screenshots/<name>.png (gitignored). */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOTS, { recursive: true })
  const path = join(SCREENSHOTS, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}

/** `npm run build:ui`: the bundle the appliance serves (the launcher would build it too when stale). */
export async function buildUi(): Promise<void> {
  await promisify(execFile)(process.execPath, [join(REPO, 'bin', 'build-ui.js')], { cwd: REPO })
}
