import { type Static, Type } from '@sinclair/typebox'
import { Uint8ArrayList } from 'uint8arraylist'
import { isErrorCode, isPswError, ProtocolError } from '../errors.ts'
import { Sha256Hex } from '../metadata/common-schema.ts'
import { compileChecker, parseJsonLimited } from '../metadata/schema-check.ts'
import { type ByteStream, sendWithBackpressure } from './byte-stream.ts'

/**
 * Control protocol, version 1: one request and one response per stream, each a 4-byte
 * big-endian length followed by that many bytes of UTF-8 JSON. Agents use it to fetch their
 * signed assignment, manifests and the signed member list, to report status, and to announce
 * what they hold of a bundle to the tracker (which answers with peers). The connection gater has already
 * admitted only enrolled PeerIds; the handler learns which one from the connection.
 */
export const CONTROL_PROTOCOL = '/patchswarm/control/1.0.0'
export const MAX_CONTROL_REQUEST_BYTES = 256 << 10
export const MAX_CONTROL_RESPONSE_BYTES = 8 << 20
/**
 * The `inventory` op alone may send a larger request: 20 000 dpkg packages are about 1.5 MB
 * of JSON. 4 MiB equals the yamux receive window of one stream (STREAM_WINDOW_BYTES), so a
 * peer can make the appliance buffer no more per stream than the transport already allows.
 * Every other op keeps MAX_CONTROL_REQUEST_BYTES.
 */
export const MAX_INVENTORY_REQUEST_BYTES = 4 << 20
export const MAX_INVENTORY_PACKAGES = 20_000

export const TransferStats = Type.Object(
  {
    bytesFromAppliance: Type.Integer({ minimum: 0 }),
    bytesFromPeers: Type.Integer({ minimum: 0 }),
    bytesServed: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
)

/** Longest log (installer, rollback, health check) a bundle report carries; agents keep the tail. */
export const MAX_REPORT_LOG_CHARS = 2000
/** Longest `detail` note of a bundle report. */
export const MAX_REPORT_DETAIL_CHARS = 200
/** Most bundles one report lists. */
export const MAX_REPORTED_BUNDLES = 256

export const BundleReport = Type.Object(
  {
    bundleId: Sha256Hex,
    state: Type.Union(
      ['pending', 'downloading', 'downloaded', 'installing', 'installed', 'failed', 'rolled-back'].map((s) =>
        Type.Literal(s),
      ),
    ),
    chunksHave: Type.Integer({ minimum: 0 }),
    chunksTotal: Type.Integer({ minimum: 0 }),
    transfer: TransferStats,
    /** Seconds the download took, once complete. */
    downloadSeconds: Type.Optional(Type.Number({ minimum: 0 })),
    error: Type.Optional(
      Type.Object(
        { code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 2000 }) },
        { additionalProperties: false },
      ),
    ),
    /**
     * The assigned action this state answers: `rollback` for a site-wide rollback (then
     * `rolled-back` is its success and `failed` its failure); absent = install.
     */
    action: Type.Optional(Type.Union([Type.Literal('install'), Type.Literal('rollback')])),
    /** Installed, but a reboot it needs (Windows 3010/1641) has not happened yet. */
    rebootRequired: Type.Optional(Type.Boolean()),
    /** The health check run after the install: its verdict and the tail of its log. */
    health: Type.Optional(
      Type.Object(
        { ok: Type.Boolean(), log: Type.String({ maxLength: MAX_REPORT_LOG_CHARS }) },
        { additionalProperties: false },
      ),
    ),
    /** The tail of the installer's output, or of the rollback's. */
    log: Type.Optional(Type.String({ maxLength: MAX_REPORT_LOG_CHARS })),
    /** A short note on the state, e.g. `not installed here; nothing to roll back`. */
    detail: Type.Optional(Type.String({ maxLength: MAX_REPORT_DETAIL_CHARS })),
  },
  { additionalProperties: false },
)

export const AgentReport = Type.Object(
  {
    agentVersion: Type.String({ maxLength: 40 }),
    hostname: Type.String({ maxLength: 255 }),
    assignmentVersion: Type.Optional(Type.Integer({ minimum: 0 })),
    /** The last assignment or manifest this agent refused, so the operator sees stale metadata. */
    refused: Type.Optional(
      Type.Object(
        { code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 2000 }) },
        { additionalProperties: false },
      ),
    ),
    bundles: Type.Array(BundleReport, { maxItems: MAX_REPORTED_BUNDLES }),
  },
  { additionalProperties: false },
)

/** A compact bitfield, base64: 50 000 chunks are 6 250 bytes, 8 336 characters. */
export const BitfieldBase64 = Type.String({ maxLength: 8400, pattern: '^[A-Za-z0-9+/]*={0,2}$' })

export const AnnounceRequest = Type.Object(
  {
    op: Type.Literal('announce'),
    bundleId: Sha256Hex,
    /** The chunks the agent holds, verified (see Bitfield). */
    have: BitfieldBase64,
    /** Where other agents can dial it. */
    addrs: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 16 }),
    /** 'stopped': the agent leaves this bundle's swarm. */
    event: Type.Optional(Type.Union([Type.Literal('started'), Type.Literal('completed'), Type.Literal('stopped')])),
  },
  { additionalProperties: false },
)

export const AnnounceResponse = Type.Object(
  {
    peers: Type.Array(
      Type.Object(
        {
          peerId: Type.String({ maxLength: 64 }),
          addrs: Type.Array(Type.String({ maxLength: 200 }), { maxItems: 16 }),
          complete: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
      { maxItems: 200 },
    ),
    /** When to announce again. */
    intervalSeconds: Type.Number({ minimum: 0.1, maximum: 3600 }),
  },
  { additionalProperties: false },
)
export type AnnounceResponseT = Static<typeof AnnounceResponse>
export const checkAnnounceResponse = compileChecker(AnnounceResponse)

const OsFacts = Type.Object(
  {
    /** Node's platform name: `linux`, `win32`, … */
    platform: Type.String({ minLength: 1, maxLength: 16 }),
    /** os-release ID (`debian`, `ubuntu`) or `windows`. */
    id: Type.Optional(Type.String({ maxLength: 64 })),
    /** PRETTY_NAME, or the Windows caption. */
    name: Type.String({ maxLength: 128 }),
    /** os-release VERSION_ID, or the Windows version (`10.0.22631`). */
    versionId: Type.Optional(Type.String({ maxLength: 64 })),
    codename: Type.Optional(Type.String({ maxLength: 64 })),
    /** Kernel release (Linux) or build number (Windows). */
    kernel: Type.String({ maxLength: 128 }),
    arch: Type.String({ maxLength: 32 }),
  },
  { additionalProperties: false },
)

export const InventoryAddress = Type.Object(
  {
    interface: Type.String({ maxLength: 64 }),
    family: Type.Union([Type.Literal('IPv4'), Type.Literal('IPv6')]),
    /** With its prefix length: `10.0.0.7/24`. */
    cidr: Type.String({ maxLength: 64 }),
    mac: Type.Optional(Type.String({ maxLength: 17 })),
  },
  { additionalProperties: false },
)

/** dpkg's installation states other than not-installed and config-files (those are not reported). */
export const PACKAGE_STATES = [
  'installed',
  'half-installed',
  'unpacked',
  'half-configured',
  'triggers-awaiting',
  'triggers-pending',
] as const

export const InventoryPackage = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 256 }),
    /** Empty when the source knows none (a Windows entry without DisplayVersion). */
    version: Type.String({ maxLength: 128 }),
    arch: Type.Optional(Type.String({ maxLength: 32 })),
    /** dpkg only; absent means installed. */
    state: Type.Optional(Type.Union(PACKAGE_STATES.map((s) => Type.Literal(s)))),
    /** dpkg: marked hold (apt will not upgrade it). */
    held: Type.Optional(Type.Boolean()),
    /** dpkg: reinstall-required flag set. */
    reinstRequired: Type.Optional(Type.Boolean()),
    publisher: Type.Optional(Type.String({ maxLength: 256 })),
    /** YYYY-MM-DD. */
    installDate: Type.Optional(Type.String({ maxLength: 10 })),
  },
  { additionalProperties: false },
)

export const InventoryHotfix = Type.Object(
  {
    /** `KB5034441`. */
    id: Type.String({ minLength: 1, maxLength: 32 }),
    description: Type.Optional(Type.String({ maxLength: 64 })),
    installedOn: Type.Optional(Type.String({ maxLength: 10 })),
  },
  { additionalProperties: false },
)

/** Why a reboot is pending (one entry per indicator found). */
export const REBOOT_REASONS = [
  'reboot-required',
  'cbs-reboot-pending',
  'wu-reboot-required',
  'pending-file-rename',
] as const

export const InventoryReport = Type.Object(
  {
    formatVersion: Type.Literal(1),
    /** When the agent collected it, by its own clock (the appliance keeps its own receive time). */
    collectedAt: Type.String({ maxLength: 40 }),
    /** SHA-256 of the canonical JSON of every other field except `collectedAt`. */
    digest: Sha256Hex,
    agentVersion: Type.String({ maxLength: 40 }),
    /** The host's own name (the enrolled name may differ). */
    hostname: Type.String({ maxLength: 255 }),
    os: OsFacts,
    addresses: Type.Array(InventoryAddress, { maxItems: 64 }),
    packageManager: Type.Union([Type.Literal('dpkg'), Type.Literal('windows-uninstall'), Type.Literal('none')]),
    packages: Type.Array(InventoryPackage, { maxItems: MAX_INVENTORY_PACKAGES }),
    /** More packages were installed than fit in the report. */
    packagesTruncated: Type.Optional(Type.Boolean()),
    hotfixes: Type.Optional(Type.Array(InventoryHotfix, { maxItems: 4096 })),
    /** Bundles patchswarm installed on this device. */
    patchswarm: Type.Array(
      Type.Object(
        { bundleId: Sha256Hex, manifestVersion: Type.Integer({ minimum: 0 }) },
        { additionalProperties: false },
      ),
      { maxItems: 256 },
    ),
    reboot: Type.Object(
      {
        pending: Type.Boolean(),
        reasons: Type.Array(Type.Union(REBOOT_REASONS.map((r) => Type.Literal(r))), { maxItems: 8 }),
        /** Linux: the packages that asked for it (/run/reboot-required.pkgs). */
        packages: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: 256 })),
      },
      { additionalProperties: false },
    ),
    /** Parts that could not be collected; the rest of the report is still valid. */
    errors: Type.Optional(
      Type.Array(
        Type.Object(
          {
            source: Type.String({ maxLength: 32 }),
            code: Type.String({ maxLength: 64 }),
            message: Type.String({ maxLength: 500 }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 16 },
      ),
    ),
  },
  { additionalProperties: false },
)
export type InventoryReportT = Static<typeof InventoryReport>
export type InventoryPackageT = Static<typeof InventoryPackage>
export const checkInventoryReport = compileChecker(InventoryReport)

export const ControlRequestSchema = Type.Union([
  Type.Object({ op: Type.Literal('get-assignment') }, { additionalProperties: false }),
  Type.Object({ op: Type.Literal('get-manifest'), bundleId: Sha256Hex }, { additionalProperties: false }),
  Type.Object({ op: Type.Literal('report'), report: AgentReport }, { additionalProperties: false }),
  Type.Object({ op: Type.Literal('get-members') }, { additionalProperties: false }),
  AnnounceRequest,
  Type.Object({ op: Type.Literal('inventory'), inventory: InventoryReport }, { additionalProperties: false }),
])

export type ControlRequest = Static<typeof ControlRequestSchema>
export type AgentReportT = Static<typeof AgentReport>
export type BundleReportT = Static<typeof BundleReport>

export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }

const requestChecker = compileChecker(ControlRequestSchema)
const responseChecker = compileChecker(
  Type.Union([
    Type.Object({ ok: Type.Literal(true), result: Type.Unknown() }),
    Type.Object({
      ok: Type.Literal(false),
      error: Type.Object({ code: Type.String({ maxLength: 64 }), message: Type.String({ maxLength: 4000 }) }),
    }),
  ]),
)

/** A peer must send its whole request within this time after opening the stream. */
export const CONTROL_REQUEST_TIMEOUT_MS = 10_000
/** The peer must have taken the whole response within this time. */
export const CONTROL_RESPONSE_TIMEOUT_MS = 30_000

function frame(value: unknown): Uint8Array {
  const body = Buffer.from(JSON.stringify(value), 'utf8')
  const out = Buffer.allocUnsafe(4 + body.byteLength)
  out.writeUInt32BE(body.byteLength, 0)
  body.copy(out, 4)
  return out
}

/** Reads exactly one length-prefixed frame, refusing one longer than `maxBytes` from its header. */
export async function readFrame(stream: ByteStream, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array> {
  // A stalled peer sends nothing, so the loop below would never look at the signal: abort
  // the stream itself when it fires (slow-retrieval defence).
  const onAbort = () => stream.abort(new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'control message timed out'))
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    const buf = new Uint8ArrayList()
    let expected: number | undefined
    for await (const data of stream) {
      signal?.throwIfAborted()
      buf.append(data)
      if (expected === undefined && buf.byteLength >= 4) {
        expected = buf.getUint32(0)
        if (expected > maxBytes) {
          throw new ProtocolError(
            'PSW_ERR_MESSAGE_TOO_LARGE',
            `control message of ${expected} bytes, limit ${maxBytes}`,
          )
        }
      }
      if (expected !== undefined && buf.byteLength >= 4 + expected) {
        if (buf.byteLength > 4 + expected) throw new ProtocolError('PSW_ERR_PROTOCOL', 'trailing bytes after message')
        return buf.subarray(4, 4 + expected)
      }
    }
    if (signal?.aborted) throw new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'control message timed out')
    throw new ProtocolError('PSW_ERR_PROTOCOL', 'stream ended before a complete message')
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}

/** Client: sends one request, returns the result or throws the remote error with its code. */
export async function controlCall(stream: ByteStream, request: ControlRequest, signal?: AbortSignal): Promise<unknown> {
  try {
    await sendWithBackpressure(stream, frame(request))
    const raw = await readFrame(stream, MAX_CONTROL_RESPONSE_BYTES, signal)
    const response = responseChecker.check(
      parseJsonLimited(raw, MAX_CONTROL_RESPONSE_BYTES, 'control response'),
      'control response',
    )
    if (response.ok) return response.result
    throw new ProtocolError(
      isErrorCode(response.error.code) ? response.error.code : 'PSW_ERR_PROTOCOL',
      response.error.message,
    )
  } finally {
    await stream.close().catch(() => {})
  }
}

/** Server: reads one request, validates it, answers with the handler's result or error code. */
export async function serveControl(
  stream: ByteStream,
  handler: (request: ControlRequest) => Promise<unknown>,
): Promise<void> {
  let response: ControlResponse
  try {
    const raw = await readFrame(stream, MAX_INVENTORY_REQUEST_BYTES, AbortSignal.timeout(CONTROL_REQUEST_TIMEOUT_MS))
    const parsed = parseJsonLimited(raw, MAX_INVENTORY_REQUEST_BYTES, 'control request')
    // Only `inventory` may use the larger limit; every other op keeps the small one.
    if (raw.byteLength > MAX_CONTROL_REQUEST_BYTES && (parsed as { op?: unknown } | null)?.op !== 'inventory') {
      throw new ProtocolError(
        'PSW_ERR_MESSAGE_TOO_LARGE',
        `control message of ${raw.byteLength} bytes, limit ${MAX_CONTROL_REQUEST_BYTES}`,
      )
    }
    const request = requestChecker.check(parsed, 'request')
    response = { ok: true, result: await handler(request) }
  } catch (err) {
    response = isPswError(err)
      ? { ok: false, error: { code: err.code, message: err.message } }
      : { ok: false, error: { code: 'PSW_ERR_INTERNAL', message: 'internal error' } }
  }
  // A peer that never reads its answer must not hold the stream slot forever.
  const timer = setTimeout(
    () => stream.abort(new ProtocolError('PSW_ERR_PEER_TIMEOUT', 'peer did not read the control response')),
    CONTROL_RESPONSE_TIMEOUT_MS,
  )
  try {
    await sendWithBackpressure(stream, frame(response))
    await stream.close()
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    clearTimeout(timer)
  }
}
