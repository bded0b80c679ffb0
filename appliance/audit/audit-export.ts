/**
 * Export encodings of audit records. JSONL is the record exactly as stored (hashes
 * included, so the chain can be checked offline); CSV is for spreadsheets.
 */
import type { AuditRecord } from './audit-record.ts'

export type AuditExportFormat = 'jsonl' | 'csv'

export const CSV_COLUMNS = [
  'seq',
  'time',
  'actor_type',
  'actor_id',
  'action',
  'target_type',
  'target_id',
  'reason',
  'request_id',
  'before',
  'after',
  'truncated',
  'prev_hash',
  'hash',
] as const

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, quote, CR or LF, quotes doubled.
 * A cell that a spreadsheet would run as a formula (starts with = + - @ TAB or CR) gets a
 * leading apostrophe first: hostnames and reasons come from agents and people.
 */
export function csvCell(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe
}

export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`
}

export function csvRow(r: AuditRecord): string {
  const json = (v: unknown) => (v === undefined ? '' : JSON.stringify(v))
  const cells = [
    String(r.seq),
    r.time,
    r.actor.type,
    r.actor.id,
    r.action,
    r.target.type,
    r.target.id,
    r.reason ?? '',
    r.requestId ?? '',
    json(r.before),
    json(r.after),
    (r.truncated ?? []).join(' '),
    r.prevHash,
    r.hash,
  ]
  return `${cells.map(csvCell).join(',')}\r\n`
}

export function jsonlRow(r: AuditRecord): string {
  return `${JSON.stringify(r)}\n`
}

export const EXPORT_CONTENT_TYPES: Record<AuditExportFormat, string> = {
  jsonl: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
}
