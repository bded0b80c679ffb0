import { can, session } from '../../api.ts'
import { jumpTo, PageTitle } from '../../components.tsx'
import { ApiTokensSection } from './api-tokens.tsx'
import { CertificatesSection } from './certificates.tsx'
import { EnrollmentSection } from './enrollment-tokens.tsx'
import { UpstreamSection } from './upstream.tsx'
import { UsersSection } from './users.tsx'

export function SettingsPage() {
  if (!can('admin'))
    return (
      <section>
        <PageTitle>Settings</PageTitle>
        <p class="notice" role="note">
          Settings are for administrators: WAN caps and schedule, feeds, accounts, API and enrollment tokens and the
          HTTPS certificate. Your role ({session.value?.legacy ? 'read-only' : session.value?.role}) may not change
          them; ask an administrator.
        </p>
      </section>
    )
  return (
    <section>
      <PageTitle>Settings</PageTitle>
      <nav aria-label="Settings sections" class="toc">
        <ul>
          {(
            [
              ['settings-upstream', 'Upstream'],
              ['settings-users', 'Users'],
              ['settings-api-tokens', 'API tokens'],
              ['settings-enrollment', 'Enrollment tokens'],
              ['settings-certificates', 'Certificates'],
            ] as const
          ).map(([id, label]) => (
            <li key={id}>
              <button type="button" onClick={jumpTo(id)}>
                {label}
              </button>
            </li>
          ))}
        </ul>
      </nav>
      <UpstreamSection />
      <UsersSection />
      <ApiTokensSection />
      <EnrollmentSection />
      <CertificatesSection />
    </section>
  )
}
