import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { systemClock } from '../shared/clock.ts'
import { silentLogger } from '../shared/log.ts'
import { createAppliance } from './appliance.ts'
import { initApplianceDataDir } from './core.ts'

describe('appliance start', () => {
  it('reports a taken HTTP port with its own code and releases everything it opened', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'psw-app-'))
    const blocker = createServer()
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    const port = (blocker.address() as { port: number }).port
    try {
      const dataDir = join(dir, 'data')
      await initApplianceDataDir(dataDir, { clock: systemClock })
      const opts = { dataDir, clock: systemClock, log: silentLogger() }
      const first = await createAppliance({
        ...opts,
        overrides: { httpPort: port, p2pListen: ['/ip4/127.0.0.1/tcp/0'] },
      })
      await expect(first.start()).rejects.toMatchObject({ code: 'PSW_ERR_ADDRESS_IN_USE' })
      // the data directory was released: the same appliance starts on a free port
      const second = await createAppliance({ ...opts, overrides: { httpPort: 0, p2pListen: ['/ip4/127.0.0.1/tcp/0'] } })
      const info = await second.start()
      expect((await fetch(`${info.httpUrl}/api/v1/health`)).status).toBe(200)
      await second.stop()
    } finally {
      blocker.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
