import type { Logger } from 'pino'
import { ValidationError } from '../../shared/errors.ts'
import { compileChecker } from '../../shared/metadata/schema-check.ts'
import type { AuditLog } from '../audit/audit-log.ts'
import type { AuditEntry } from '../audit/audit-record.ts'
import { readApplianceConfig, writeApplianceConfig } from '../config.ts'
import { defaultUpstreamConfig, type UpstreamConfig, UpstreamConfigSchema } from '../upstream/upstream-config.ts'
import type { Upstream } from '../upstream/upstream-factory.ts'
import { parseWanSchedule } from '../upstream/wan-schedule.ts'

const upstreamChecker = compileChecker(UpstreamConfigSchema)

export interface SettingsView {
  siteName: string
  upstream: UpstreamConfig
}

/**
 * The Settings page's backend: reads the appliance's configuration file and changes its
 * upstream part (feeds, WAN cap and schedule, cache quota, auto-download, sync interval).
 * A change is validated as a whole, written durably to `appliance.json`, applied to the running
 * upstream at once, and audited with before and after — in that order, under the audit log's
 * lock, so two changes never interleave.
 */
export class SettingsService {
  readonly #d: { dataDir: string; upstream: Upstream; audit: AuditLog; log: Logger }

  constructor(deps: { dataDir: string; upstream: Upstream; audit: AuditLog; log: Logger }) {
    this.#d = deps
  }

  async get(): Promise<SettingsView> {
    const config = await readApplianceConfig(this.#d.dataDir)
    return { siteName: config.siteName, upstream: config.upstream ?? defaultUpstreamConfig() }
  }

  async setUpstream(input: unknown, actor: AuditEntry['actor']): Promise<UpstreamConfig> {
    const next = upstreamChecker.check(input, 'upstream settings')
    // What the schema cannot say (a time zone the runtime knows, rules that start and end apart):
    // a 400 naming the field, never an error from deep inside the limiter.
    parseWanSchedule(next.wan.schedule, 'WAN schedule')
    const ids = next.feeds.map((f) => f.id)
    const twice = ids.find((id, i) => ids.indexOf(id) !== i)
    if (twice !== undefined)
      throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `two feeds have the id ${twice}`, {
        details: { field: 'feeds' },
      })
    return this.#d.audit.exclusive(async () => {
      const config = await readApplianceConfig(this.#d.dataDir)
      const before = config.upstream ?? defaultUpstreamConfig()
      // Applied first (it builds every feed adapter, which checks what the schema cannot, such as
      // feed keys), so a configuration the running appliance cannot take is never written.
      this.#d.upstream.reconfigure(next)
      try {
        await writeApplianceConfig(this.#d.dataDir, { ...config, upstream: next })
      } catch (err) {
        this.#d.upstream.reconfigure(before)
        throw err
      }
      await this.#d.audit.append({
        actor,
        action: 'settings.upstream',
        target: { type: 'settings', id: 'upstream' },
        before,
        after: next,
      })
      this.#d.log.info({ actor }, 'upstream settings changed')
      return next
    })
  }
}
