import { execFile, spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { setupNetns } from './netns.ts'

const exec = promisify(execFile)

/** Root, and `ip netns add/del` work (tried on a throwaway namespace). */
function netnsUsable(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false
  const probe = `pswprobe${randomBytes(3).toString('hex')}`
  const added = spawnSync('ip', ['netns', 'add', probe], { stdio: 'ignore' })
  if (added.error || added.status !== 0) return false
  spawnSync('ip', ['netns', 'del', probe], { stdio: 'ignore' })
  return spawnSync('tc', ['-V'], { stdio: 'ignore' }).status === 0
}

const PORT = 7707
/** Listens on HOST:PORT and answers every connection with NAME; prints "ready" once listening. */
const SERVER = `const [host, name] = process.argv.slice(1)
require('net').createServer((c) => c.end(name)).listen(${PORT}, host, () => console.log('ready'))`
/** Connects to each HOST:PORT in turn and prints the replies as a JSON array. */
const CLIENT = `const net = require('net')
const ask = (host) => new Promise((resolve, reject) => {
  const c = net.connect({ host, port: ${PORT}, timeout: 2000 }); let s = ''
  c.on('data', (d) => (s += d)).on('end', () => resolve(s)).on('error', reject).on('timeout', () => reject(new Error('timeout ' + host)))
})
Promise.all(process.argv.slice(1).map(ask)).then((r) => console.log(JSON.stringify(r)))`

/** Runs `node -e CLIENT hosts…` under `wrap` and returns the replies. */
async function ask(wrap: string[], hosts: string[]): Promise<string[]> {
  const cmd = [...wrap, process.execPath, '-e', CLIENT, ...hosts]
  const { stdout } = await exec(cmd[0]!, cmd.slice(1), { timeout: 5000 })
  return JSON.parse(stdout) as string[]
}

describe('setupNetns', () => {
  it.skipIf(!netnsUsable())(
    'connects namespaces on a bridge, shapes uploads and tears down',
    async () => {
      const agentUp = 1 << 20
      const applianceUp = 512 * 1024
      const net = await setupNetns(2, { agentUp, applianceUp })
      const servers: ReturnType<typeof spawn>[] = []
      const nsNames = [net.applianceWrap, net.agentWrap(0), net.agentWrap(1)].map((w) => w[w.length - 1]!)
      try {
        expect(net.agentIps).toHaveLength(2)
        expect(new Set([net.applianceIp, ...net.agentIps]).size).toBe(3)
        expect(net.agentWrap(1).slice(0, 3)).toEqual(['ip', 'netns', 'exec'])

        // A server in every namespace, on its own address.
        const ends = [
          { name: 'appliance', wrap: net.applianceWrap, ip: net.applianceIp },
          { name: 'agent0', wrap: net.agentWrap(0), ip: net.agentIps[0]! },
          { name: 'agent1', wrap: net.agentWrap(1), ip: net.agentIps[1]! },
        ]
        await Promise.all(
          ends.map(({ name, wrap, ip }) => {
            const cmd = [...wrap, process.execPath, '-e', SERVER, ip, name]
            const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
            servers.push(child)
            return new Promise<void>((resolve, reject) => {
              child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve())
              child.on('exit', (code) => reject(new Error(`server ${name} exited with ${code}`)))
            })
          }),
        )

        // Agents reach the appliance and each other; the root namespace reaches all of them.
        const [fromAgent0, fromAgent1, fromRoot] = await Promise.all([
          ask(net.agentWrap(0), [net.applianceIp, net.agentIps[1]!]),
          ask(net.agentWrap(1), [net.applianceIp, net.agentIps[0]!]),
          ask([], [net.applianceIp, ...net.agentIps]),
        ])
        expect(fromAgent0).toEqual(['appliance', 'agent1'])
        expect(fromAgent1).toEqual(['appliance', 'agent0'])
        expect(fromRoot).toEqual(['appliance', 'agent0', 'agent1'])

        // Each namespace's upload is shaped by tbf at its rate (tc -j reports bytes/s).
        for (const [wrap, rate] of [
          [net.applianceWrap, applianceUp],
          [net.agentWrap(0), agentUp],
        ] as const) {
          const { stdout } = await exec(wrap[0]!, [...wrap.slice(1), 'tc', '-j', 'qdisc', 'show', 'dev', 'eth0'])
          const qdiscs = JSON.parse(stdout) as Array<{ kind: string; root?: boolean; options?: { rate?: number } }>
          expect(qdiscs.find((q) => q.root)).toMatchObject({ kind: 'tbf', options: { rate } })
        }
      } finally {
        for (const s of servers) s.kill()
        await net.teardown()
      }

      const { stdout: left } = await exec('ip', ['netns', 'list'])
      for (const ns of nsNames) expect(left).not.toContain(ns)
      const subnet = net.applianceIp.split('.').slice(0, 2).join('.')
      const { stdout: addrs } = await exec('ip', ['-4', '-o', 'addr', 'show'])
      expect(addrs).not.toContain(`${subnet}.`)
      await net.teardown() // idempotent
    },
    10_000,
  )
})
