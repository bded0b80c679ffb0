/**
 * The appliance's two listeners for one fastify app (docs/web-ui.md "Listeners"):
 *
 * - HTTPS (`http.httpsHost`:`http.httpsPort`, default 0.0.0.0:8443): an HTTP/2 server with
 *   `allowHTTP1`, so a browser multiplexes its event stream and its requests over one
 *   connection, and HTTP/1.1 clients (curl, scripts, agents) still work. This is fastify's
 *   main server (`app.server`).
 * - plain HTTP/1.1 (`http.host`:`http.port`, default 127.0.0.1:8080), loopback only (the
 *   configuration refuses anything else), for the CLI and tools on the box.
 *
 * Both run the same request handler, so routes, hooks, rate limits and the event hub are
 * shared. `request.protocol` is 'https' on the first and 'http' on the second (fastify reads
 * `socket.encrypted`). Stopping closes both without waiting for idle keep-alive connections:
 * idle HTTP/1.1 sockets are destroyed, HTTP/2 sessions get GOAWAY, requests in flight may
 * finish, and whatever is still open after {@link FORCE_CLOSE_MS} is destroyed.
 */
import { createServer as createHttp1Server, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import {
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2'
import type { AddressInfo, Socket } from 'node:net'
import type { FastifyInstance, FastifyServerFactory } from 'fastify'
import { StoreError } from '../../shared/errors.ts'

/** Longest a stop waits for requests in flight before destroying their connections. */
export const FORCE_CLOSE_MS = 5_000
/** An HTTP/2 session without any frame for this long is closed (fastify's default). */
const H2_SESSION_TIMEOUT_MS = 72_000

type Handler = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void

export interface ListenAddress {
  host: string
  /** 0 = any free port. */
  port: number
}

export interface WebListening {
  httpsUrl: string
  httpUrl: string
  httpsPort: number
  httpPort: number
}

export interface WebServers {
  /** Give to `Fastify({ serverFactory })`: creates both servers around fastify's handler. */
  readonly serverFactory: FastifyServerFactory
  /**
   * Starts both listeners (HTTPS first, as `app.listen`). Call before the app is ready (it adds
   * an onClose hook). A port in use → PSW_ERR_ADDRESS_IN_USE naming the listener and address.
   */
  listen(app: FastifyInstance, addresses: { https: ListenAddress; http: ListenAddress }): Promise<WebListening>
  /** Serves a new certificate to new TLS connections from now on. */
  setCertificate(tls: { cert: string; key: string }): void
}

/** The URL for a listen address: wildcard hosts become 127.0.0.1, IPv6 literals get brackets. */
export function urlFor(scheme: 'http' | 'https', host: string, port: number): string {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host
  return `${scheme}://${h}:${port}`
}

export function createWebServers(tls: { cert: string; key: string }): WebServers {
  let secure: Http2SecureServer | undefined
  let plain: Server | undefined
  const sessions = new Set<Http2Session>()
  /** HTTP/1.1-over-TLS sockets → requests in flight on them. */
  const h1Sockets = new Map<Socket, number>()
  let closing = false
  let forceTimer: NodeJS.Timeout | undefined

  const forceClose = () => {
    for (const s of sessions) s.destroy()
    for (const sock of h1Sockets.keys()) sock.destroy()
    plain?.closeAllConnections()
  }

  /** Called by fastify once every preClose hook has run (fastify calls it for serverFactory servers). */
  const closeIdle = () => {
    if (closing) return
    closing = true
    for (const s of sessions) if (!s.closed) s.close()
    for (const [sock, inFlight] of h1Sockets) if (inFlight === 0) sock.destroy()
    if (plain?.listening) plain.close()
    plain?.closeIdleConnections()
    forceTimer = setTimeout(forceClose, FORCE_CLOSE_MS)
    forceTimer.unref()
  }

  const serverFactory: FastifyServerFactory = (fastifyHandler) => {
    const handler = fastifyHandler as unknown as Handler
    secure = createSecureServer({ cert: tls.cert, key: tls.key, allowHTTP1: true, minVersion: 'TLSv1.2' }, handler)
    plain = createHttp1Server(handler as (req: IncomingMessage, res: ServerResponse) => void)
    secure.on('session', (session: Http2Session) => {
      // As fastify's own HTTP/2 servers (http2SessionTimeout): idle sessions are closed.
      session.setTimeout(H2_SESSION_TIMEOUT_MS, () => session.close())
      sessions.add(session)
      session.once('close', () => sessions.delete(session))
      if (closing) session.close()
    })
    secure.on('secureConnection', (socket: Socket & { alpnProtocol?: string | false }) => {
      if (socket.alpnProtocol === 'h2') return
      h1Sockets.set(socket, 0)
      socket.once('close', () => h1Sockets.delete(socket))
    })
    secure.on('request', (req: Http2ServerRequest | IncomingMessage, res: Http2ServerResponse | ServerResponse) => {
      if (req.httpVersionMajor !== 1) return
      const socket = (req as IncomingMessage).socket
      h1Sockets.set(socket, (h1Sockets.get(socket) ?? 0) + 1)
      res.once('close', () => {
        const left = (h1Sockets.get(socket) ?? 1) - 1
        h1Sockets.set(socket, left)
        if (closing && left === 0) socket.destroy()
      })
    })
    secure.on('close', () => clearTimeout(forceTimer))
    // fastify uses these on close (see fastify/lib/server.js): ours close both listeners.
    Object.assign(secure, { closeIdleConnections: closeIdle })
    // Typed as the HTTP/1 server fastify's default generics expect: routes only use what both
    // request kinds have (headers, socket, raw writes), and fastify handles HTTP/2 replies per request.
    return secure as unknown as Server
  }

  return {
    serverFactory,
    async listen(app, addresses) {
      if (!secure || !plain) throw new Error('createWebServers: the app was not created with this serverFactory')
      const plainServer = plain
      app.addHook('onClose', async () => {
        closeIdle()
        if (plainServer.listening) await new Promise<void>((resolve) => plainServer.once('close', () => resolve()))
        clearTimeout(forceTimer)
      })
      try {
        await app.listen({ host: addresses.https.host, port: addresses.https.port })
      } catch (err) {
        throw addressError(err, 'HTTPS', addresses.https, '--https-port')
      }
      try {
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error) => reject(err)
          plainServer.once('error', onError)
          plainServer.listen({ host: addresses.http.host, port: addresses.http.port }, () => {
            plainServer.off('error', onError)
            resolve()
          })
        })
      } catch (err) {
        throw addressError(err, 'plain HTTP', addresses.http, '--http-port')
      }
      const httpsPort = (secure.address() as AddressInfo).port
      const httpPort = (plainServer.address() as AddressInfo).port
      return {
        httpsPort,
        httpPort,
        httpsUrl: urlFor('https', addresses.https.host, httpsPort),
        httpUrl: urlFor('http', addresses.http.host, httpPort),
      }
    },
    setCertificate(next) {
      secure?.setSecureContext({ cert: next.cert, key: next.key })
    },
  }
}

/**
 * `GET /ca.crt` (public): the web CA in PEM as `application/x-x509-ca-cert`, for browsers and
 * OS trust stores. 404 when the served certificate was imported without its CA.
 */
export function registerCaRoute(app: FastifyInstance, caPem: () => string | null): void {
  app.get('/ca.crt', { schema: { hide: true } }, async (_request, reply) => {
    const pem = caPem()
    if (pem === null) {
      return reply.code(404).send({
        code: 'PSW_ERR_NOT_FOUND',
        message: 'the server certificate was imported without its CA; get the CA from whoever issued it',
      })
    }
    return reply
      .type('application/x-x509-ca-cert')
      .header('content-disposition', 'attachment; filename="patchswarm-web-ca.crt"')
      .header('cache-control', 'no-store')
      .send(pem)
  })
}

function addressError(err: unknown, listener: string, address: ListenAddress, option: string): unknown {
  const code = (err as NodeJS.ErrnoException).code
  if (code !== 'EADDRINUSE' && code !== 'EACCES' && code !== 'EADDRNOTAVAIL') return err
  const where = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`
  const why =
    code === 'EADDRINUSE'
      ? 'another process listens there (another appliance?)'
      : code === 'EACCES'
        ? 'permission denied (ports below 1024 need privileges)'
        : 'no such local address'
  return new StoreError(
    'PSW_ERR_ADDRESS_IN_USE',
    `${listener} listener cannot listen on ${where}: ${why}; choose another port (${option}) or host`,
    { cause: err, details: { listener, host: address.host, port: address.port } },
  )
}
