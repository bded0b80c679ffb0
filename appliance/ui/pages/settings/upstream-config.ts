// Shapes of appliance/upstream/upstream-config.ts, as the settings routes send them.

export interface PatchswarmFeed {
  id: string
  kind: 'patchswarm'
  url: string
  publicKeys?: string[]
  maxBytes?: number
}
export interface FolderFeed {
  id: string
  kind: 'folder'
  path: string
  publicKeys?: string[]
  maxBytes?: number
}
export interface AptFeed {
  id: string
  kind: 'apt'
  baseUrl: string
  suite: string
  components: string[]
  architectures: Array<'amd64' | 'arm64' | 'all'>
  keyring: string[]
  packages?: string[]
  vendor?: string
  product?: string
  classification?: string
  severity?: string
  requireValidUntil?: boolean
  [more: string]: unknown
}
export type Feed = PatchswarmFeed | FolderFeed | AptFeed

export interface WanRule {
  days: string[]
  start: string
  end: string
  bytesPerSecond: number
}

export interface UpstreamConfig {
  feeds: Feed[]
  syncIntervalMinutes: number
  wan: {
    schedule: { timeZone: string; defaultBytesPerSecond: number; rules: WanRule[] }
    downloader?: Record<string, unknown>
  }
  cache: { quotaBytes: number }
  autoDownload: { severities: string[]; classifications: string[]; emergency: boolean }
}

export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const
export const SEVERITY_NAMES = ['critical', 'high', 'medium', 'low', 'none'] as const
export const CLASSIFICATIONS = [
  'security',
  'critical',
  'bugfix',
  'feature',
  'definition',
  'driver',
  'tool',
  'other',
] as const
export const GIB = 1024 ** 3
