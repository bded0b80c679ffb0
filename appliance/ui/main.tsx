import './main.css'
import { render } from 'preact'
import { session } from './api.ts'
import { boot, bootError, phase } from './auth-flow.ts'
import { ErrorBox, Loading } from './components.tsx'
import { Layout } from './layout.tsx'
import { AuditPage } from './pages/audit.tsx'
import { LoginPage, SetupPage } from './pages/auth.tsx'
import { DashboardPage } from './pages/dashboard.tsx'
import { DeviceDetailPage, DevicesPage } from './pages/devices.tsx'
import { PatchesPage } from './pages/patches.tsx'
import { PoliciesPage } from './pages/policies/index.tsx'
import { ReportsPage } from './pages/reports.tsx'
import { RolloutDetailPage, RolloutsPage } from './pages/rollouts.tsx'
import { SettingsPage } from './pages/settings/index.tsx'
import { SwarmPage } from './pages/swarm.tsx'
import { WindowsPage } from './pages/windows.tsx'
import { route } from './router.ts'

function Page() {
  const [name, arg] = route.value.path
  switch (name) {
    case undefined:
    case 'dashboard':
      return <DashboardPage />
    case 'devices':
      return arg ? <DeviceDetailPage peerId={arg} /> : <DevicesPage />
    case 'patches':
      return <PatchesPage />
    case 'rollouts':
      return arg ? <RolloutDetailPage id={arg} /> : <RolloutsPage />
    case 'policies':
      return <PoliciesPage />
    case 'windows':
      return <WindowsPage />
    case 'swarm':
      return <SwarmPage />
    case 'audit':
      return <AuditPage />
    case 'reports':
      return <ReportsPage />
    case 'settings':
      return <SettingsPage />
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            There is no page <code>{location.hash}</code>. <a href="#/dashboard">Go to the dashboard</a>.
          </p>
        </section>
      )
  }
}

function App() {
  if (phase.value === 'boot') return <Loading what="Connecting to the appliance" />
  if (phase.value === 'failed')
    return (
      <main class="narrow">
        <h1>patchswarm</h1>
        <ErrorBox error={bootError.value} title="The appliance did not answer" />
        <button type="button" onClick={() => location.reload()}>
          Try again
        </button>
      </main>
    )
  const name = route.value.path[0]
  if (name === 'setup') return <SetupPage />
  if (name === 'login' || !session.value) return <LoginPage />
  return (
    <Layout>
      <Page key={route.value.path.join('/')} />
    </Layout>
  )
}

render(<App />, document.getElementById('app')!)
void boot()
