/**
 * npm run sim:swarm -- [--agents N] [--size BYTES] [--chunk-size BYTES] [--agent-up B/S]
 *   [--appliance-up B/S] [--agent-down B/S] [--scenario slow-appliance|slow-agents|both]
 *   [--seed N] [--json] [tuning flags, see below]
 *
 * Simulates one appliance and N agents fetching a bundle over a LAN, driving the real
 * DownloadPlanner, UploadScheduler, Tracker and SeedingPolicy (the model is described at the
 * top of test/sim/simulator.ts). Stdout carries JSON only: one object per scenario run, each
 * { scenario, agents, bytes, seconds_p50, seconds_max, lower_bound_seconds, ratio,
 * appliance_upload_ratio, peer_bytes_fraction, duplicate_bytes, wall_seconds, ... }; with
 * `--scenario both` a last line { "scenarios": [...] } holds both. Without --json a summary and
 * progress lines go to stderr too. The goal: ratio = seconds_max / lower_bound_seconds ≤ 1.1.
 *
 * Scenarios set the upload rates (explicit --agent-up / --appliance-up win):
 *   slow-appliance  appliance 2 MiB/s, agents 8 MiB/s (the default)
 *   slow-agents     appliance 16 MiB/s, agents 2 MiB/s
 *
 * --shipped starts from the values the agent and appliance programs use today (the chunk size
 * autoChunkSize() picks for --size, and SHIPPED_OPTIONS
 * in simulator.ts: agents 2 slots, queue 4, 2 per peer, neediest first, maxInflight 16; appliance queue 32,
 * 8 per peer, rareFirstMs 1000, no refuseAfterMs) instead of the defaults below; flags given
 * explicitly still win.
 *
 * Tuning flags (passed to the shared classes; default = the class's own default unless noted):
 *   --peer-window N --appliance-window N --solo-window N --avoid-ms MS --endgame-fanout N
 *   --max-inflight N (DownloadPlanner); --slots N (4) --max-queued N (16) --max-queued-per-peer N (4) (agents'
 *   UploadScheduler); --appliance-slots N (4) --appliance-max-queued N (32)
 *   --appliance-max-queued-per-peer N (4) --refuse-after-ms MS (1000; negative = never)
 *   --rare-first-ms MS (off) (appliance's UploadScheduler); --recent-ms MS (SeedingPolicy); --max-peers N (30)
 *   --announce-ms MS (2000) --rtt-ms MS (0.5) --max-seconds S (3600); --tick-only (re-plan
 *   refused agents on a --tick-ms timer, 100 ms, instead of waking each exactly when its
 *   backoff ends; slower, for checking the exact wake-ups) and --tick-ms MS.
 *   Connection model (the simulator's, not shared code): --max-connections N (unlimited: a
 *   peer accepts every dial); --agent-priority fifo|neediest (agents' UploadScheduler order:
 *   neediest = the requester holding the fewest chunks first, as the agent does; fifo = no
 *   priority).
 */
import { parseArgs } from 'node:util'
import { autoChunkSize } from '../../shared/content/chunking.ts'
import { DEFAULT_OPTIONS, SHIPPED_OPTIONS, type SimOptions, type SimResult, simulate } from './simulator.ts'

const MiB = 1 << 20
const SCENARIOS = {
  'slow-appliance': { applianceUp: 2 * MiB, agentUp: 8 * MiB },
  'slow-agents': { applianceUp: 16 * MiB, agentUp: 2 * MiB },
} as const
type Scenario = keyof typeof SCENARIOS

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: String(DEFAULT_OPTIONS.agents) },
    size: { type: 'string', default: String(DEFAULT_OPTIONS.size) },
    'chunk-size': { type: 'string' },
    'agent-up': { type: 'string' },
    'appliance-up': { type: 'string' },
    'agent-down': { type: 'string' },
    scenario: { type: 'string' },
    seed: { type: 'string', default: String(DEFAULT_OPTIONS.seed) },
    json: { type: 'boolean', default: false },
    'peer-window': { type: 'string' },
    'appliance-window': { type: 'string' },
    'solo-window': { type: 'string' },
    'avoid-ms': { type: 'string' },
    'endgame-fanout': { type: 'string' },
    slots: { type: 'string' },
    'max-queued': { type: 'string' },
    'max-queued-per-peer': { type: 'string' },
    'agent-priority': { type: 'string' },
    'appliance-slots': { type: 'string' },
    'appliance-max-queued': { type: 'string' },
    'appliance-max-queued-per-peer': { type: 'string' },
    'refuse-after-ms': { type: 'string' },
    'rare-first-ms': { type: 'string' },
    'max-inflight': { type: 'string' },
    shipped: { type: 'boolean', default: false },
    'recent-ms': { type: 'string' },
    'max-peers': { type: 'string' },
    'max-connections': { type: 'string' },
    'announce-ms': { type: 'string' },
    'rtt-ms': { type: 'string' },
    'tick-ms': { type: 'string' },
    'tick-only': { type: 'boolean', default: false },
    'max-seconds': { type: 'string' },
  },
})

const say = (s: string) => process.stderr.write(`${s}\n`)

function num(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const n = Number(value)
  if (!Number.isFinite(n)) {
    say(`--${name}: not a number: ${value}`)
    process.exit(2)
  }
  return n
}

const v = values as Record<string, string | boolean | undefined>
const flag = (name: string) => num(name, v[name] as string | undefined)

let scenarios: Array<Scenario | 'custom'>
if (values.scenario === 'both') scenarios = ['slow-appliance', 'slow-agents']
else if (values.scenario === undefined) scenarios = ['slow-appliance']
else if (values.scenario in SCENARIOS) scenarios = [values.scenario as Scenario]
else {
  say(`--scenario must be slow-appliance, slow-agents or both, not ${values.scenario}`)
  process.exit(2)
}
if (values['agent-priority'] !== undefined && !['fifo', 'neediest'].includes(values['agent-priority'])) {
  say(`--agent-priority must be fifo or neediest, not ${values['agent-priority']}`)
  process.exit(2)
}
if (values.scenario === undefined && (values['agent-up'] !== undefined || values['appliance-up'] !== undefined))
  scenarios = ['custom']

const results: Array<Omit<SimResult, 'agent_seconds'> & { scenario: string; shipped: boolean }> = []
for (const scenario of scenarios) {
  const preset = scenario === 'custom' ? SCENARIOS['slow-appliance'] : SCENARIOS[scenario]
  const given: Partial<SimOptions> = {
    agents: flag('agents'),
    size: flag('size'),
    chunkSize: flag('chunk-size'),
    agentUp: flag('agent-up') ?? preset.agentUp,
    applianceUp: flag('appliance-up') ?? preset.applianceUp,
    agentDown: flag('agent-down'),
    seed: flag('seed'),
    peerWindow: flag('peer-window'),
    applianceWindow: flag('appliance-window'),
    soloWindow: flag('solo-window'),
    avoidMs: flag('avoid-ms'),
    endgameFanout: flag('endgame-fanout'),
    slots: flag('slots'),
    maxQueued: flag('max-queued'),
    maxQueuedPerPeer: flag('max-queued-per-peer'),
    agentPriority: values['agent-priority'] as SimOptions['agentPriority'] | undefined,
    applianceSlots: flag('appliance-slots'),
    applianceMaxQueued: flag('appliance-max-queued'),
    applianceMaxQueuedPerPeer: flag('appliance-max-queued-per-peer'),
    refuseAfterMs: flag('refuse-after-ms'),
    rareFirstMs: flag('rare-first-ms'),
    maxInflight: flag('max-inflight'),
    recentMs: flag('recent-ms'),
    maxPeers: flag('max-peers'),
    maxConnections: flag('max-connections'),
    announceMs: flag('announce-ms'),
    rttMs: flag('rtt-ms'),
    tickMs: flag('tick-ms'),
    exactWake: !values['tick-only'],
    maxSeconds: flag('max-seconds'),
  }
  // Flags given explicitly win over --shipped, which wins over the simulator's defaults.
  const options: Partial<SimOptions> = { ...(values.shipped ? SHIPPED_OPTIONS : {}) }
  for (const [k, v] of Object.entries(given)) if (v !== undefined) (options as Record<string, unknown>)[k] = v
  // The programs pick the chunk size from the bundle size (autoChunkSize); without --shipped
  // the simulator's default (1 MiB) stays, so older figures can be reproduced.
  if (options.chunkSize === undefined)
    options.chunkSize = values.shipped ? autoChunkSize(options.size ?? DEFAULT_OPTIONS.size) : DEFAULT_OPTIONS.chunkSize
  if (!values.json) {
    say(
      `${scenario}: ${options.agents} agents, ${options.size} bytes, appliance ${((options.applianceUp ?? 0) / MiB).toFixed(1)} MiB/s, agents ${((options.agentUp ?? 0) / MiB).toFixed(1)} MiB/s`,
    )
    options.onProgress = (p) =>
      say(
        `  t=${p.seconds.toFixed(0)}s complete ${p.complete}/${p.agents} appliance sent ${(p.applianceBytes / MiB).toFixed(0)} MiB (${p.events} events)`,
      )
  }
  const { agent_seconds: _, ...summary } = simulate(options)
  const result = { scenario, shipped: values.shipped, ...summary }
  results.push(result)
  if (!values.json) {
    say(
      `  done: max ${result.seconds_max}s p50 ${result.seconds_p50}s, bound ${result.lower_bound_seconds}s, ratio ${result.ratio}` +
        `, appliance sent ${result.appliance_upload_ratio}× the bundle, ${(result.peer_bytes_fraction * 100).toFixed(1)}% from peers` +
        `, ${result.duplicate_bytes} duplicate bytes, ${result.wall_seconds}s wall`,
    )
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
}
if (results.length > 1) process.stdout.write(`${JSON.stringify({ scenarios: results })}\n`)
