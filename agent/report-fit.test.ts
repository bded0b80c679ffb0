import { describe, expect, it } from 'vitest'
import { compileChecker } from '../shared/metadata/schema-check.ts'
import {
  type AgentReportT,
  type BundleReportT,
  ControlRequestSchema,
  MAX_CONTROL_REQUEST_BYTES,
  MAX_REPORTED_BUNDLES,
} from '../shared/protocol/control-protocol.ts'
import { seededRandom } from '../shared/swarm/chunk-picker.ts'
import {
  cleanText,
  cutHead,
  cutTail,
  fitReport,
  jsonTextBytes,
  REPORT_BUDGET_BYTES,
  REPORT_ERROR_CHARS,
  waterFill,
} from './report-fit.ts'

const requestBytes = (report: AgentReportT) => Buffer.byteLength(JSON.stringify({ op: 'report', report }), 'utf8')
const checkRequest = compileChecker(ControlRequestSchema)

/** Random text over the nastiest alphabet: quotes, controls, 2/3/4-byte UTF-8, lone surrogates. */
function nasty(random: () => number, length: number): string {
  const alphabet = ['a', '"', '\\', '\n', '\u0001', '\u007f', 'é', '中', '😀', '\ud800', '\udc00', '\t']
  let s = ''
  while (s.length < length) s += alphabet[Math.floor(random() * alphabet.length)]
  return s
}

/** A bundle report with every field at its largest. */
function worstBundle(i: number, text: string): BundleReportT {
  return {
    bundleId: i.toString(16).padStart(64, 'f'),
    state: 'downloading',
    chunksHave: 50_000,
    chunksTotal: 50_000,
    transfer: {
      bytesFromAppliance: Number.MAX_SAFE_INTEGER,
      bytesFromPeers: Number.MAX_SAFE_INTEGER,
      bytesServed: Number.MAX_SAFE_INTEGER,
    },
    downloadSeconds: 1.2345678901234567e300,
    error: { code: 'PSW_ERR_'.padEnd(64, 'X'), message: text.slice(0, 2000) },
    action: 'rollback',
    rebootRequired: false,
    health: { ok: false, log: text },
    log: text,
    detail: text,
  }
}

describe('report texts', () => {
  it('measures JSON bytes exactly as JSON.stringify writes them', () => {
    const random = seededRandom(7)
    for (let i = 0; i < 200; i++) {
      const s = nasty(random, Math.floor(random() * 300))
      expect(jsonTextBytes(s)).toBe(Buffer.byteLength(JSON.stringify(s), 'utf8') - 2)
    }
  })

  it('cleans control characters and lone surrogates, keeping the length', () => {
    const s = 'a\u0001b\nc\td\ud800e😀'
    const clean = cleanText(s)
    expect(clean).toBe('a b\nc\td\ufffde😀')
    expect(clean.length).toBe(s.length)
  })

  it('cuts heads and tails to both limits, never splitting a surrogate pair', () => {
    expect(cutHead('abcdef', 10)).toBe('abcdef')
    expect(cutHead('abcdef', 4)).toBe('abc…')
    expect(cutTail('abcdef', 4)).toBe('…def')
    expect(cutHead('abcdef', 10, 5)).toBe('ab…')
    expect(cutTail('abcdef', 10, 5)).toBe('…ef')
    expect(cutHead('abc', 10, 2)).toBe('')
    const emoji = '😀😀😀'
    for (let n = 1; n <= 6; n++) {
      expect(cutHead(emoji, n).toWellFormed()).toBe(cutHead(emoji, n))
      expect(cutTail(emoji, n).toWellFormed()).toBe(cutTail(emoji, n))
      expect(cutHead(emoji, n).length).toBeLessThanOrEqual(n)
    }
    const random = seededRandom(3)
    for (let i = 0; i < 100; i++) {
      const s = cleanText(nasty(random, 200))
      const max = Math.floor(random() * 400)
      expect(jsonTextBytes(cutHead(s, 1000, max))).toBeLessThanOrEqual(max)
      expect(jsonTextBytes(cutTail(s, 1000, max))).toBeLessThanOrEqual(max)
    }
  })

  it('water-fills: modest bundles keep all they need, the rest share what is left', () => {
    expect(waterFill([10, 1000, 1000], 1210)).toEqual([10, 600, 600])
    expect(waterFill([10, 20], 1000)).toEqual([10, 20])
    expect(waterFill([100, 100], 0)).toEqual([0, 0])
  })
})

describe('fitReport', () => {
  it('leaves a small report as it is (apart from the error message cut)', () => {
    const b: BundleReportT = {
      ...worstBundle(1, 'x'),
      error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'm'.repeat(1000) },
      log: 'install log',
      health: { ok: false, log: 'health log' },
    }
    const fitted = fitReport({ agentVersion: '0.1.0', hostname: 'pc-1', bundles: [b] })
    expect(fitted.bundles[0]!.error!.message).toHaveLength(REPORT_ERROR_CHARS)
    expect(fitted.bundles[0]!.log).toBe('install log')
    expect(fitted.bundles[0]!.health).toEqual({ ok: false, log: 'health log' })
  })

  it('keeps the worst case (256 bundles, every text at its limit, 3-6 byte characters) inside the frame', () => {
    const random = seededRandom(11)
    const text = nasty(random, 2000)
    const report: AgentReportT = {
      agentVersion: 'v'.repeat(40),
      hostname: '中'.repeat(255),
      assignmentVersion: Number.MAX_SAFE_INTEGER,
      refused: { code: 'PSW_ERR_'.padEnd(64, 'X'), message: text },
      bundles: Array.from({ length: MAX_REPORTED_BUNDLES }, (_, i) => worstBundle(i, text)),
    }
    expect(requestBytes(report)).toBeGreaterThan(3 * MAX_CONTROL_REQUEST_BYTES)
    const fitted = fitReport(report)
    expect(requestBytes(fitted)).toBeLessThanOrEqual(REPORT_BUDGET_BYTES)
    // The receiver's schema takes it as it is.
    expect(() => checkRequest.check({ op: 'report', report: fitted }, 'request')).not.toThrow()
    // Every bundle still says something: at least this much of its error message.
    for (const b of fitted.bundles) expect(b.error!.message.length).toBeGreaterThanOrEqual(100)
    // The fixed part of the worst case, measured (docs/protocol.md quotes it: 130 679 bytes),
    // leaves every one of the 256 bundles at least 500 bytes of text.
    const fixed = requestBytes(fitReport(report, 0))
    expect(fixed).toBeLessThanOrEqual(131_000)
    expect((REPORT_BUDGET_BYTES - fixed) / MAX_REPORTED_BUNDLES).toBeGreaterThanOrEqual(500)
  })

  it('gives bundles with short texts all they need and the long ones the rest', () => {
    const long = 'L'.repeat(2000)
    const bundles = Array.from({ length: MAX_REPORTED_BUNDLES }, (_, i) =>
      i < 2
        ? { ...worstBundle(i, long), error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'failed' } }
        : { ...worstBundle(i, ''), error: { code: 'PSW_ERR_INSTALL_FAILED', message: 'failed' } },
    )
    const fitted = fitReport({ agentVersion: '0.1.0', hostname: 'pc', bundles })
    expect(fitted.bundles[0]!.log).toBe(long)
    expect(fitted.bundles[1]!.health!.log).toBe(long)
    expect(fitted.bundles[5]!.error!.message).toBe('failed')
  })
})
