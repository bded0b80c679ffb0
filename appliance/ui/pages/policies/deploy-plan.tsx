import { useState } from 'preact/hooks'
import { post, type Rollout } from '../../api.ts'
import { ErrorBox, useAction } from '../../components.tsx'
import { shortId } from '../../format.ts'
import { DEFAULT_RINGS, type RingDraft, RingsEditor, ringSpec } from '../../rings-editor.tsx'
import { href } from '../../router.ts'

export interface DeployResult {
  created: Rollout[]
  skipped: Array<{ bundleId: string; reason: string; detail: string }>
  failed: Array<{ bundleId: string; id: string; error: { code: string; message: string } }>
}

export function DeployPlan({ names }: { names: Map<string, string> }) {
  const [rings, setRings] = useState<RingDraft[]>(DEFAULT_RINGS)
  const [retries, setRetries] = useState('2')
  const { busy, error, run } = useAction()
  const [result, setResult] = useState<DeployResult | undefined>(undefined)
  const submit = async (e: Event) => {
    e.preventDefault()
    await run(async () => {
      setResult(
        await post<DeployResult>('/api/v1/plan/rollouts', { rings: rings.map(ringSpec), retries: Number(retries) }),
      )
    })
  }
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="deploy-plan">
      <h3 id="deploy-plan">Deploy the plan</h3>
      <p class="muted">
        One rollout per planned patch, targeting the groups whose plan has it, with this ring template. Patches that
        already have a live rollout are skipped.
      </p>
      <RingsEditor rings={rings} onChange={setRings} layout="table">
        <label>
          Retries per device
          <input
            type="number"
            min={0}
            max={10}
            value={retries}
            required
            onInput={(e) => setRetries(e.currentTarget.value)}
          />
        </label>
      </RingsEditor>
      <ErrorBox error={error} title="The plan was not deployed" />
      <div class="actions">
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Deploying…' : 'Deploy the plan'}
        </button>
      </div>
      {result ? (
        <div role="status" class="deploy-result">
          <p>
            <strong>{result.created.length}</strong> created, <strong>{result.skipped.length}</strong> skipped,{' '}
            <strong>{result.failed.length}</strong> failed.
          </p>
          <ul class="compact-list">
            {result.created.map((r) => (
              <li key={r.id}>
                Created <a href={href('rollouts', r.id)}>{r.name}</a>{' '}
                <span class="muted">for {r.spec.target === 'all' ? 'all devices' : r.spec.target.join(', ')}</span>
              </li>
            ))}
            {result.skipped.map((s) => (
              <li key={`s-${s.bundleId}`}>
                Skipped {names.get(s.bundleId) ?? shortId(s.bundleId)}: {s.detail || s.reason}
              </li>
            ))}
            {result.failed.map((f) => (
              <li key={`f-${f.bundleId}`} class="error-inline">
                Failed {names.get(f.bundleId) ?? shortId(f.bundleId)}: {f.error.message} <code>{f.error.code}</code>
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </form>
  )
}
