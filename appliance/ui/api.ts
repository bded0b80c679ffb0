import { signal } from '@preact/signals'

/** The signed-in account (GET /api/v1/auth/session). */
export interface Session {
  username: string
  role: Role
  csrfToken: string
  /** True on an appliance without accounts yet: loopback reads, no writes from the browser. */
  legacy?: boolean
}
export type Role = 'viewer' | 'operator' | 'admin'

/** The auth endpoints (docs/web-ui.md, "Accounts and sessions"). */
export const AUTH = {
  state: '/api/v1/auth/state',
  session: '/api/v1/auth/session',
  setup: '/api/v1/auth/setup',
  login: '/api/v1/auth/login',
  logout: '/api/v1/auth/logout',
} as const

export const session = signal<Session | null>(null)

/** An API error: the `{ code, message }` body, or what we could make of a response without one. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string
  /** The body's `details` when it has them (e.g. `{ field }` naming the invalid part). */
  details?: Record<string, unknown>
  constructor(status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

/** Called on a 401 from any call except the auth ones: the session is gone. */
let onUnauthorized: () => void = () => {}
export function setUnauthorizedHandler(fn: () => void): void {
  onUnauthorized = fn
}

async function errorOf(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { code?: unknown; message?: unknown; details?: unknown }
    if (typeof body.code === 'string' && typeof body.message === 'string') {
      const err = new ApiError(res.status, body.code, body.message)
      if (body.details && typeof body.details === 'object') err.details = body.details as Record<string, unknown>
      return err
    }
  } catch {
    // not JSON
  }
  return new ApiError(res.status, `HTTP_${res.status}`, res.statusText || `HTTP ${res.status}`)
}

/**
 * Calls the API: JSON in and out, the session cookie (same origin only), and the CSRF
 * token on every unsafe method. Throws ApiError; a 401 also sends the UI to the login page.
 */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const csrf = session.value?.csrfToken
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['x-csrf-token'] = csrf
  let res: Response
  try {
    res = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
  } catch (err) {
    throw new ApiError(0, 'NETWORK', `the appliance did not answer (${(err as Error).message})`)
  }
  if (!res.ok) {
    const err = await errorOf(res)
    if (res.status === 401 && !path.startsWith('/api/v1/auth/')) onUnauthorized()
    throw err
  }
  if (res.status === 204) return undefined as T
  const type = res.headers.get('content-type') ?? ''
  return (type.includes('json') ? await res.json() : await res.text()) as T
}

export const get = <T>(path: string) => api<T>('GET', path)
export const post = <T>(path: string, body: unknown = {}) => api<T>('POST', path, body)

/** What a role may do (the server enforces it; the UI only hides what would be refused). */
export function can(action: 'operate' | 'admin', s: Session | null = session.value): boolean {
  if (!s || s.legacy) return false
  return action === 'operate' ? s.role === 'operator' || s.role === 'admin' : s.role === 'admin'
}

/** `?a=1&b=x` from the defined entries. */
export function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v))
  const s = q.toString()
  return s ? `?${s}` : ''
}

// ---- Shapes of the REST API's answers (the parts the UI shows) ----

export interface Device {
  peerId: string
  hostname: string
  enrolledAt: string
  lastSeen?: string
  tags: string[]
  tier: string
  inventory?: {
    receivedAt: string
    hostname: string
    os: { platform: string; name: string; kernel: string; arch: string; versionId?: string }
    packages: number
    rebootPending: boolean
  }
}

export interface BundleReport {
  bundleId: string
  state: string
  chunksHave: number
  chunksTotal: number
  transfer: { bytesFromAppliance: number; bytesFromPeers: number; bytesServed: number }
  error?: { code: string; message: string }
  action?: 'install' | 'rollback'
  rebootRequired?: boolean
  detail?: string
}

export interface DeviceDetail {
  device: Device & {
    report?: { agentVersion: string; bundles: BundleReport[]; refused?: { code: string; message: string } }
  }
  inventory: null | {
    receivedAt: string
    inventory: {
      hostname: string
      os: { name: string; kernel: string; arch: string }
      addresses: Array<{ address: string; interface?: string; family?: string }>
      packageManager: string
      packages: unknown[]
      hotfixes?: Array<{ id: string }>
      reboot: { pending: boolean; reasons: string[] }
    }
  }
}

export interface Approval {
  bundleId: string
  group: string
  decision: 'approve' | 'decline' | 'skip'
  deadline?: string
  by: string
  at: string
  rule?: string
}

export interface Patch {
  bundleId: string
  name: string
  version: string
  vendor: string
  product: string
  classification: string
  severity: string
  addedAt: string
  approvals: Approval[]
}

export interface Group {
  id: string
  name?: string
  memberCount?: number
}

export interface Artifact {
  ref: string
  state: string
  listed: boolean
  name: string
  version: string
  vendor: string
  product: string
  severity: string
  classification: string
  cves: string[]
  emergency: boolean
  size: number
  bundleId?: string
  requestedBy?: string
  error?: { code: string; message: string }
}

export interface Download {
  sha256: string
  name: string
  feedId: string
  key: string
  state: string
  bytes: number
  size: number
  rateBytesPerSec: number
  attempt: number
  lastError?: { code: string; message: string }
}

export interface UpstreamStatus {
  feeds: Array<{
    feedId: string
    kind: string
    lastSyncAt?: string
    lastOkAt?: string
    artifacts: number
    lastError?: { message: string }
  }>
  downloads: Download[]
  counts: Record<string, number>
  cache: { quotaBytes: number; usedBytes: number; bundles: number }
  wanBytesPerSecond: number
}

export interface RingView {
  name: string
  selector: { groups: string[] } | { percent: number } | { count: number } | { rest: true }
  successThreshold: number
  errorThreshold: number
  soakMinutes?: number
  approvalGate?: boolean
  status: 'pending' | 'deploying' | 'soaking' | 'awaiting-approval' | 'passed'
  startedAt?: number
  passedAt?: number
  soakUntil?: number
  approvedBy?: string
  total: number
  installed: number
  failed: number
  pending: number
  rollingBack: number
  rolledBack: number
  rollbackFailed: number
}

export interface Rollout {
  id: string
  name: string
  bundleId: string
  status: 'active' | 'paused' | 'halted' | 'cancelled' | 'completed' | 'rolling-back' | 'rolled-back'
  reason?: string
  createdAt: string
  updatedAt: string
  current: number
  rollback?: { by: string; at: string; reason?: string; emergency: boolean }
  rings: RingView[]
  spec: { target: 'all' | string[]; retries: number }
}

export interface RolloutDevice {
  ring: number
  state: string
  attempts: number
  lastError?: { code: string; message: string }
  since: string
}

export interface AuditRecord {
  seq: number
  time: string
  actor: { type: string; id: string }
  action: string
  target: { type: string; id: string }
  reason?: string
}

export interface WanUsage {
  totalBytes: number
  artifactBytes: number
  indexBytes: number
  todayBytes: number
  days: Array<{ day: string; bytes: number }>
}

export interface StatusDevice {
  peerId: string
  report?: { bundles: BundleReport[] }
}
