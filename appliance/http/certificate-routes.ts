import { X509Certificate } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { AuditLog } from '../audit/audit-log.ts'
import { actorOf, requireRole } from '../auth/principal.ts'
import type { WebCertificates } from './web-tls.ts'

/**
 * What the certificate routes need of the running appliance (wired in appliance.ts): the
 * current web certificates (`readWebCertificates`), a renewal (`ensureWebCertificates` with
 * `renew`, then `reloadWebCertificate()` so new connections get it), and the HTTPS URLs agents
 * and browsers use (also in the enrollment token response).
 */
export interface CertificatesApi {
  read(): Promise<WebCertificates>
  renew(): Promise<WebCertificates>
  urls(): { httpsUrl: string | null; webUrls: string[] }
}

export const CertificateViewSchema = Type.Object({
  /** SHA-256 of the web CA (colon hex); null for an imported certificate without its CA. */
  caFingerprint256: Type.Union([Type.String(), Type.Null()]),
  /** `GET /ca.crt` serves the web CA (absent when there is none to serve). */
  caAvailable: Type.Boolean(),
  serverFingerprint256: Type.String(),
  subject: Type.String(),
  issuer: Type.String(),
  notBefore: Type.String(),
  notAfter: Type.String(),
  dnsNames: Type.Array(Type.String()),
  ipAddresses: Type.Array(Type.String()),
  imported: Type.Boolean(),
  warnings: Type.Array(Type.String()),
  httpsUrl: Type.Union([Type.String(), Type.Null()]),
  webUrls: Type.Array(Type.String()),
})

/** The public facts of the web certificates: never the keys, never the file paths. */
export function certificateView(web: WebCertificates, urls: ReturnType<CertificatesApi['urls']>) {
  const leaf = new X509Certificate(web.cert)
  return {
    caFingerprint256: web.caFingerprint256,
    caAvailable: web.caPem !== null,
    serverFingerprint256: web.serverFingerprint256,
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    notBefore: new Date(leaf.validFrom).toISOString(),
    notAfter: web.notAfter,
    dnsNames: web.dnsNames,
    ipAddresses: web.ipAddresses,
    imported: web.imported,
    warnings: web.warnings,
    httpsUrl: urls.httpsUrl,
    webUrls: urls.webUrls,
  }
}

/**
 * The Settings page's certificate section (admin): what the HTTPS listener serves, and a
 * renewal from the appliance's web CA (refused with PSW_ERR_CONFLICT for an imported
 * certificate), served to new connections at once and audited (`settings.certificate.renew`).
 */
export function registerCertificateRoutes(
  app: FastifyInstance,
  deps: { certificates: CertificatesApi; audit: Pick<AuditLog, 'append'> },
): void {
  const { certificates, audit } = deps
  const admin = requireRole('admin')

  app.get(
    '/api/v1/settings/certificate',
    { onRequest: admin, schema: { response: { 200: CertificateViewSchema } } },
    async (_request, reply) => {
      reply.header('cache-control', 'no-store')
      return certificateView(await certificates.read(), certificates.urls())
    },
  )

  app.post(
    '/api/v1/settings/certificate/renew',
    { onRequest: admin, schema: { response: { 200: CertificateViewSchema } } },
    async (request) => {
      const before = await certificates.read().catch(() => undefined)
      const next = await certificates.renew()
      await audit.append({
        actor: actorOf(request),
        action: 'settings.certificate.renew',
        target: { type: 'certificate', id: 'web-server' },
        ...(before ? { before: { serverFingerprint256: before.serverFingerprint256, notAfter: before.notAfter } } : {}),
        after: {
          serverFingerprint256: next.serverFingerprint256,
          notAfter: next.notAfter,
          dnsNames: next.dnsNames,
          ipAddresses: next.ipAddresses,
        },
        requestId: request.id,
      })
      return certificateView(next, certificates.urls())
    },
  )
}
