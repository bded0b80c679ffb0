import helmet from '@fastify/helmet'
import type { FastifyInstance } from 'fastify'

/** The content security policy of docs/web-ui.md, exactly. */
export const CSP_DIRECTIVES = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'", 'data:'],
  connectSrc: ["'self'"],
  fontSrc: ["'self'"],
  formAction: ["'self'"],
  frameAncestors: ["'none'"],
  baseUri: ["'none'"],
}

export const HSTS_VALUE = 'max-age=31536000; includeSubDomains'

/**
 * Security headers of docs/web-ui.md on every response: the CSP (no upgrade-insecure-requests:
 * the loopback listener is plain HTTP), nosniff, no-referrer, X-Frame-Options DENY; HSTS only
 * on HTTPS requests; `cache-control: no-store` on every /api/ response. Register before routes
 * (helmet configures routes as they are added).
 */
export async function installSecurityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: { useDefaults: false, directives: CSP_DIRECTIVES },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Set per request below: a header sent over plain HTTP would be ignored at best.
    strictTransportSecurity: false,
  })
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.protocol === 'https') reply.header('strict-transport-security', HSTS_VALUE)
    if (request.url.startsWith('/api/')) reply.header('cache-control', 'no-store')
    return payload
  })
}
