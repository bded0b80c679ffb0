/**
 * The agent's HTTP calls to the appliance (enrollment, health), over HTTPS trusting exactly
 * the appliance's web CA. Browsers need that CA to be ECDSA (docs/web-ui.md), so it is not the
 * Ed25519 root agents pin for everything else; it is pinned the same way instead: `appliance
 * token` prints its SHA-256 fingerprint, the agent downloads `/ca.crt` once, keeps it only if
 * the fingerprint matches, and from then on verifies the appliance's TLS certificate against
 * it (and nothing else). Without a pinned fingerprint, HTTPS uses the system's trust store (an
 * operator-imported certificate from a CA the endpoints trust); plain `http:` works only for
 * loopback appliances, where it is all the appliance serves.
 */
import { createHash, X509Certificate } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest, type RequestOptions } from 'node:https'
import { EnrollmentError, ProtocolError } from '../errors.ts'

/** At most this much of an answer is read. */
const DEFAULT_MAX_BYTES = 256 << 10

export interface ApplianceHttpResponse {
  status: number
  text: string
}

/** Lower-case hex without separators (the form `appliance token` and `cert show` print, colons allowed). */
export function normalizeFingerprint(fp: string): string {
  return fp.toLowerCase().replaceAll(':', '')
}

/** SHA-256 of a PEM certificate's DER, lower-case hex. */
export function certFingerprint256(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')
}

/**
 * One request to the appliance. `caPem` = the only CA its HTTPS certificate may chain to;
 * `insecure` = no TLS verification at all (only for fetching `/ca.crt`, whose bytes are then
 * checked against a pinned fingerprint). Transport failures are PSW_ERR_APPLIANCE_UNREACHABLE.
 */
export function applianceRequest(
  url: URL,
  options: {
    method?: 'GET' | 'POST'
    body?: unknown
    caPem?: string
    insecure?: boolean
    /** Extra request headers (e.g. a bearer token). */
    headers?: Record<string, string>
    signal?: AbortSignal
    maxBytes?: number
  } = {},
): Promise<ApplianceHttpResponse> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES
  const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body))
  const tls: RequestOptions =
    url.protocol === 'https:'
      ? options.insecure
        ? { rejectUnauthorized: false }
        : options.caPem
          ? { ca: options.caPem }
          : {}
      : {}
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method: options.method ?? 'GET',
        headers: {
          ...options.headers,
          ...(body ? { 'content-type': 'application/json', 'content-length': body.length } : {}),
        },
        ...tls,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (res) => {
        const pieces: Buffer[] = []
        let total = 0
        res.on('data', (piece: Buffer) => {
          total += piece.length
          if (total > maxBytes) {
            res.destroy()
            reject(new ProtocolError('PSW_ERR_TOO_LARGE', `answer from ${url.pathname} exceeds ${maxBytes} bytes`))
            return
          }
          pieces.push(piece)
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(pieces).toString('utf8') }))
        res.on('error', (err) =>
          reject(new ProtocolError('PSW_ERR_APPLIANCE_UNREACHABLE', `reading ${url}: ${err.message}`, { cause: err })),
        )
      },
    )
    req.on('error', (err) =>
      reject(
        new ProtocolError('PSW_ERR_APPLIANCE_UNREACHABLE', `cannot reach ${url.origin}: ${err.message}`, {
          cause: err,
        }),
      ),
    )
    req.end(body)
  })
}

/**
 * Downloads the appliance's web CA from `<base>/ca.crt` and returns it only if its SHA-256
 * fingerprint is the pinned one (PSW_ERR_ROOT_MISMATCH otherwise: someone else answered).
 */
export async function fetchPinnedWebCa(base: string, pinned: string, signal?: AbortSignal): Promise<string> {
  const url = new URL('/ca.crt', base)
  const res = await applianceRequest(url, { insecure: true, maxBytes: 64 << 10, ...(signal ? { signal } : {}) })
  if (res.status !== 200)
    throw new ProtocolError('PSW_ERR_PROTOCOL', `the appliance answered ${res.status} for /ca.crt`)
  let actual: string
  try {
    actual = certFingerprint256(res.text)
  } catch (err) {
    throw new ProtocolError('PSW_ERR_PROTOCOL', '/ca.crt is not a PEM certificate', { cause: err })
  }
  if (actual !== normalizeFingerprint(pinned))
    throw new EnrollmentError(
      'PSW_ERR_ROOT_MISMATCH',
      `the appliance's web CA has fingerprint ${actual}, not the expected ${normalizeFingerprint(pinned)}`,
    )
  return res.text
}
