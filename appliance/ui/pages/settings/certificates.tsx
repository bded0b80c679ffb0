import { useState } from 'preact/hooks'
import { post } from '../../api.ts'
import { ConfirmButton, ErrorBox, Loading } from '../../components.tsx'
import { useApi } from '../../data.ts'
import { dateTime } from '../../format.ts'
import { Section } from './section.tsx'

export interface CertificateView {
  caFingerprint256: string | null
  caAvailable: boolean
  serverFingerprint256: string
  subject: string
  issuer: string
  notBefore: string
  notAfter: string
  dnsNames: string[]
  ipAddresses: string[]
  imported: boolean
  warnings: string[]
  httpsUrl: string | null
  webUrls: string[]
}

export function CertificatesSection() {
  const res = useApi<CertificateView>('/api/v1/settings/certificate', () => false)
  const [renewed, setRenewed] = useState<string | undefined>(undefined)
  const c = res.data
  const daysLeft = c ? Math.floor((Date.parse(c.notAfter) - Date.now()) / 86_400_000) : 0
  return (
    <Section id="settings-certificates" title="Certificates">
      <ErrorBox error={res.error} title="Could not load the certificate" />
      {res.loading && !c ? <Loading /> : null}
      {c ? (
        <>
          <dl class="facts">
            <dt>Web CA SHA-256</dt>
            <dd class="mono wrap" data-testid="ca-fingerprint">
              {c.caFingerprint256 ?? 'unknown (imported without its CA)'}
            </dd>
            <dt>Web CA</dt>
            <dd>
              {c.caAvailable ? (
                <a href="/ca.crt" download="patchswarm-web-ca.crt">
                  Download the web CA (ca.crt)
                </a>
              ) : (
                '—'
              )}{' '}
              <span class="muted">Compare its fingerprint before importing it into browsers.</span>
            </dd>
            <dt>Server certificate</dt>
            <dd>
              {c.imported
                ? 'imported by an operator (never renewed automatically)'
                : "issued by the appliance's web CA"}
            </dd>
            <dt>Names</dt>
            <dd class="wrap">{[...c.dnsNames, ...c.ipAddresses].join(', ') || '—'}</dd>
            <dt>Subject</dt>
            <dd class="wrap">{c.subject}</dd>
            <dt>Issuer</dt>
            <dd class="wrap">{c.issuer}</dd>
            <dt>Valid</dt>
            <dd>
              {dateTime(c.notBefore)} to {dateTime(c.notAfter)}{' '}
              <span class={daysLeft < 30 ? 'error-inline' : 'muted'}>({daysLeft} days left)</span>
            </dd>
            <dt>Server SHA-256</dt>
            <dd class="mono wrap">{c.serverFingerprint256}</dd>
            <dt>HTTPS addresses</dt>
            <dd class="wrap">
              {[...new Set([...(c.webUrls ?? []), ...(c.httpsUrl ? [c.httpsUrl] : [])])].join(', ') || '—'}
            </dd>
          </dl>
          {c.warnings.map((w) => (
            <p key={w} class="error">
              {w}
            </p>
          ))}
          <div class="actions">
            <ConfirmButton
              label="Renew now"
              title="Renew the server certificate?"
              message={
                c.imported
                  ? 'This certificate was imported: renew it by importing a new one (patchswarm appliance cert import). The appliance refuses to replace it here.'
                  : "A new server certificate is issued from the same web CA, for this machine's current names and addresses. Browsers that trust the web CA keep trusting it; new connections get it at once."
              }
              confirmLabel="Renew"
              onConfirm={async () => {
                const next = await post<CertificateView>('/api/v1/settings/certificate/renew', {})
                setRenewed(`Renewed: valid until ${dateTime(next.notAfter)}.`)
                res.reload()
              }}
            />
            <span role="status">{renewed ?? ''}</span>
          </div>
        </>
      ) : null}
    </Section>
  )
}
