/**
 * Network namespaces for `bench:swarm --netns` (needs root, `ip` and `tc` from iproute2).
 *
 * Layout, for one run with bridge `pswXXXX` on the /16 `10.S.0.0` (S random and not used by any
 * address or route in the root namespace):
 *
 *   root namespace:   bridge pswXXXX 10.S.0.1/16 (so the bench process reaches every namespace)
 *                       ├─ veth pswXXXX-ap ── eth0 10.S.0.2/16   in netns pswXXXX-app (appliance)
 *                       ├─ veth pswXXXX-0  ── eth0 10.S.0.3/16   in netns pswXXXX-a0  (agent 0)
 *                       └─ veth pswXXXX-i  ── eth0 10.S.x.y/16   in netns pswXXXX-ai  (agent i, host 3+i)
 *
 * Every namespace has `lo` up and a 224.0.0.0/4 route on eth0 (mDNS), and a tbf qdisc on the
 * egress of its own eth0, i.e. its upload is shaped and its download is not (the upload-limited
 * model the Kumar–Ross lower bound assumes). The bridge floods multicast (snooping off).
 *
 * Speed: the root-side work (namespaces, bridge, veth pairs created with their peer end directly
 * in the namespace) is one `ip -batch` process; then each namespace is configured by one
 * `ip -n NS -batch` and one `tc -n NS` process, a few namespaces in parallel. 20 agents take well
 * under a second.
 *
 * If a run is killed (SIGKILL, Ctrl-C) before teardown, remove leftovers by hand:
 *   for n in $(ip netns list | grep -o '^psw[0-9a-f]*-[a-z0-9]*'); do ip netns del $n; done
 *   ip -br link show type bridge | grep -o '^psw[0-9a-f]*' | xargs -rn1 ip link del
 */
import { execFile } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import { existsSync } from 'node:fs'

export interface NetnsSetup {
  /** The appliance's address on the bridge. */
  applianceIp: string
  /** Each agent's address on the bridge. */
  agentIps: string[]
  /** Command prefix that runs a program in the appliance's namespace. */
  applianceWrap: string[]
  /** Command prefix that runs a program in agent i's namespace. */
  agentWrap(i: number): string[]
  teardown(): Promise<void>
}

/** The interface name of the veth end inside every namespace. */
const INNER_IF = 'eth0'
/** How many namespaces are configured at the same time. */
const PARALLEL = 8
/** Hosts 1 (bridge) and 2 (appliance) are taken; agents start at 3; 65535 is the broadcast. */
const MAX_AGENTS = 65_535 - 3

/**
 * Runs `file args…` (feeding `input` on stdin, for `-batch -`) and resolves with its stdout, or
 * rejects with an error naming the command, its stderr and, for a batch, the line that failed.
 */
function run(file: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      if (!err) {
        resolve(stdout)
        return
      }
      let detail = stderr.trim() || err.message
      const line = input !== undefined ? /Command failed -:(\d+)/.exec(stderr)?.[1] : undefined
      if (line !== undefined) detail += `\n  failing batch line ${line}: ${input!.split('\n')[Number(line) - 1]}`
      reject(new Error(`netns: \`${[file, ...args].join(' ')}\` failed: ${detail}`))
    })
    // A missing binary fails the spawn; the callback above reports it, so ignore EPIPE here.
    child.stdin?.on('error', () => {})
    child.stdin?.end(input ?? '')
  })
}

/** Runs `fn` over `items`, at most `limit` at a time; rejects with the first failure. */
async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const errors: unknown[] = []
  const worker = async () => {
    while (next < items.length && errors.length === 0) {
      const item = items[next++]!
      try {
        await fn(item)
      } catch (err) {
        errors.push(err)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (errors.length > 0) throw errors[0]
}

/** A second octet S such that nothing in the root namespace uses 10.S.x.x. */
async function pickSubnet(): Promise<number> {
  const seen =
    (await run('ip', ['-4', '-o', 'addr', 'show'])) + (await run('ip', ['-4', 'route', 'show', 'table', 'all']))
  const used = new Set<number>()
  for (const m of seen.matchAll(/(?<![\d.])10\.(\d{1,3})\./g)) used.add(Number(m[1]))
  // 10.0.x.x and 10.255.x.x are skipped as commonly used by other software.
  const free = Array.from({ length: 254 }, (_, k) => k + 1).filter((s) => !used.has(s))
  if (free.length === 0) throw new Error('netns: every 10.S.0.0/16 is in use in the root namespace')
  return free[randomInt(free.length)]!
}

/** A bridge name `pswXXXX` whose interface and namespaces do not exist yet. */
function pickBridgeName(): string {
  for (let attempt = 0; attempt < 100; attempt++) {
    const name = `psw${randomBytes(2).toString('hex')}`
    if (!existsSync(`/sys/class/net/${name}`) && !existsSync(`/run/netns/${name}-app`)) return name
  }
  throw new Error('netns: could not find an unused bridge name')
}

/** `10.S.hi.lo` for host number `host` (1 … 65534) of 10.S.0.0/16. */
function hostIp(subnet: number, host: number): string {
  return `10.${subnet}.${host >> 8}.${host & 255}`
}

/**
 * The tbf burst (bucket size) in bytes for `rate` bytes/s. The bucket is refilled between timer
 * ticks, so it must hold at least rate/HZ bytes (HZ can be as low as 100) or the link cannot
 * reach its rate; rate/50 leaves a 2–5× margin. The 64 KiB floor lets veth's GSO/TSO
 * super-packets (up to 64 KiB) through whole — tbf would otherwise have to segment each one,
 * which costs CPU that `cpu_seconds` would measure. The price is that a link may briefly exceed
 * its rate by one burst (64 KiB ≈ 31 ms at 2 MiB/s), negligible against multi-second transfers.
 */
export function tbfBurstBytes(rate: number): number {
  return Math.max(64 * 1024, Math.ceil(rate / 50))
}

interface Endpoint {
  /** Namespace name. */
  ns: string
  /** Root-side veth end (a bridge port). */
  port: string
  ip: string
  /** Upload rate in bytes/s. */
  rate: number
}

/**
 * Creates one namespace for the appliance and one per agent on a fresh bridge, uploads shaped
 * to `applianceUp` / `agentUp` bytes/s. If any step fails, whatever was created is removed
 * before the error is thrown.
 */
export async function setupNetns(agents: number, rates: { agentUp: number; applianceUp: number }): Promise<NetnsSetup> {
  if (!Number.isInteger(agents) || agents < 0 || agents > MAX_AGENTS) {
    throw new Error(`netns: agents must be an integer in 0…${MAX_AGENTS}, got ${agents}`)
  }
  for (const [name, rate] of Object.entries(rates)) {
    if (!(Number.isFinite(rate) && rate > 0)) throw new Error(`netns: ${name} must be > 0 bytes/s, got ${rate}`)
  }
  const subnet = await pickSubnet()
  const bridge = pickBridgeName()
  const appliance: Endpoint = {
    ns: `${bridge}-app`,
    port: `${bridge}-ap`,
    ip: hostIp(subnet, 2),
    rate: rates.applianceUp,
  }
  const agentEnds: Endpoint[] = Array.from({ length: agents }, (_, i) => ({
    ns: `${bridge}-a${i}`,
    port: `${bridge}-${i}`,
    ip: hostIp(subnet, 3 + i),
    rate: rates.agentUp,
  }))
  const all = [appliance, ...agentEnds]

  const teardown = async (): Promise<void> => {
    // Deleting a veth end removes its peer; deleting a namespace would too, but asynchronously.
    // Only items that still exist are listed, so an item that is already gone is never an error.
    const present = () => [
      ...all.filter((e) => existsSync(`/sys/class/net/${e.port}`)).map((e) => `link del ${e.port}`),
      ...all.filter((e) => existsSync(`/run/netns/${e.ns}`)).map((e) => `netns del ${e.ns}`),
      ...(existsSync(`/sys/class/net/${bridge}`) ? [`link del ${bridge}`] : []),
    ]
    const todo = present()
    if (todo.length === 0) return
    let failure: unknown
    try {
      // -force: keep going past a failing line so one problem does not leave the rest behind.
      await run('ip', ['-force', '-batch', '-'], `${todo.join('\n')}\n`)
    } catch (err) {
      failure = err
    }
    const left = present()
    if (left.length > 0) {
      throw new Error(
        `netns: teardown left ${left.join(', ')}${failure instanceof Error ? ` (${failure.message})` : ''}`,
      )
    }
  }

  try {
    // Root namespace: namespaces, bridge, veth pairs (peer end created inside its namespace).
    const root = [
      ...all.map((e) => `netns add ${e.ns}`),
      // Snooping off: with no multicast querier on the bridge, flooding is what mDNS needs.
      `link add ${bridge} type bridge mcast_snooping 0`,
      `addr add ${hostIp(subnet, 1)}/16 dev ${bridge}`,
      `link set ${bridge} up`,
      ...all.map((e) => `link add ${e.port} type veth peer name ${INNER_IF} netns ${e.ns}`),
      ...all.map((e) => `link set ${e.port} master ${bridge} up`),
    ]
    await run('ip', ['-batch', '-'], `${root.join('\n')}\n`)

    // Inside each namespace: addresses, routes, upload shaping.
    await eachLimited(all, PARALLEL, async (e) => {
      const inner = [
        'link set lo up',
        `addr add ${e.ip}/16 dev ${INNER_IF}`,
        `link set ${INNER_IF} up`,
        `route add 224.0.0.0/4 dev ${INNER_IF}`,
      ]
      await run('ip', ['-n', e.ns, '-batch', '-'], `${inner.join('\n')}\n`)
      const rate = `${Math.max(1, Math.round(e.rate * 8))}bit`
      const burst = String(tbfBurstBytes(e.rate))
      await run('tc', [
        '-n',
        e.ns,
        'qdisc',
        'add',
        'dev',
        INNER_IF,
        'root',
        'tbf',
        'rate',
        rate,
        'burst',
        burst,
        'latency',
        '50ms',
      ])
    })
  } catch (err) {
    try {
      await teardown()
    } catch (cleanupErr) {
      throw new AggregateError([err, cleanupErr], `${(err as Error).message}; cleanup also failed`)
    }
    throw err
  }

  return {
    applianceIp: appliance.ip,
    agentIps: agentEnds.map((e) => e.ip),
    applianceWrap: ['ip', 'netns', 'exec', appliance.ns],
    agentWrap(i: number): string[] {
      const end = agentEnds[i]
      if (!end) throw new RangeError(`netns: no agent ${i} (have ${agents})`)
      return ['ip', 'netns', 'exec', end.ns]
    },
    teardown,
  }
}
