import type { ComponentChildren } from 'preact'

/** One ring of a rollout as a form edits it: every number still the text of its input. */
export interface RingDraft {
  name: string
  kind: 'percent' | 'count' | 'groups' | 'rest'
  value: string
  success: string
  error: string
  soak: string
  gate: boolean
}

export const DEFAULT_RINGS: RingDraft[] = [
  { name: 'canary', kind: 'count', value: '1', success: '100', error: '1', soak: '30', gate: true },
  { name: 'pilot', kind: 'percent', value: '20', success: '90', error: '10', soak: '60', gate: false },
  { name: 'broad', kind: 'rest', value: '', success: '95', error: '5', soak: '0', gate: false },
]

/** The server's ring spec for a draft (thresholds from percent to a fraction). */
export function ringSpec(r: RingDraft) {
  const selector =
    r.kind === 'rest'
      ? { rest: true as const }
      : r.kind === 'groups'
        ? {
            groups: r.value
              .split(',')
              .map((g) => g.trim())
              .filter(Boolean),
          }
        : r.kind === 'percent'
          ? { percent: Number(r.value) }
          : { count: Number(r.value) }
  return {
    name: r.name.trim(),
    selector,
    successThreshold: Number(r.success) / 100,
    errorThreshold: Number(r.error) / 100,
    ...(r.soak.trim() === '' ? {} : { soakMinutes: Number(r.soak) }),
    ...(r.gate ? { approvalGate: true } : {}),
  }
}

/** The server takes at most this many rings. */
const MAX_RINGS = 16

/** The ring "Add a ring" appends as the n-th. */
const newRing = (n: number): RingDraft => ({
  name: `ring-${n}`,
  kind: 'percent',
  value: '50',
  success: '95',
  error: '5',
  soak: '0',
  gate: false,
})

/** The selector kinds, with the option text of the fieldset layout and of the (narrower) table layout. */
const KINDS: Array<[RingDraft['kind'], string, string]> = [
  ['count', 'a number of devices', 'a number'],
  ['percent', 'a percentage', 'a percentage'],
  ['groups', 'groups', 'groups'],
  ['rest', 'every remaining device', 'the rest'],
]

const inputText = (e: Event) => (e.currentTarget as HTMLInputElement | HTMLSelectElement).value

/**
 * The ring editor of a rollout: name, devices (count, percent, groups or the rest), success and
 * error thresholds, soak and approval gate per ring, with "Remove ring n" and "Add a ring".
 *
 * `fieldsets` (the rollout form): one fieldset per ring ("Ring 1") with visible labels, inside a
 * "Rings, in order" fieldset. `table` (the plan's ring template): a row per ring, each input named
 * by its aria-label ("Ring 1 success threshold"), then an actions row with "Add a ring" and
 * `children`.
 */
export function RingsEditor({
  rings,
  onChange,
  layout,
  children,
}: {
  rings: RingDraft[]
  onChange: (rings: RingDraft[]) => void
  layout: 'fieldsets' | 'table'
  children?: ComponentChildren
}) {
  const update = (i: number, patch: Partial<RingDraft>) =>
    onChange(rings.map((r, j) => (j === i ? { ...r, ...patch } : r)))
  /** The props each layout gives its inputs, alike in both. */
  const fields = (r: RingDraft, i: number) => ({
    name: { value: r.name, required: true, onInput: (e: Event) => update(i, { name: inputText(e) }) },
    kind: {
      value: r.kind,
      onChange: (e: Event) => update(i, { kind: inputText(e) as RingDraft['kind'] }),
    },
    value: { value: r.value, required: true, onInput: (e: Event) => update(i, { value: inputText(e) }) },
    success: {
      type: 'number' as const,
      min: 0,
      max: 100,
      value: r.success,
      required: true,
      onInput: (e: Event) => update(i, { success: inputText(e) }),
    },
    error: {
      type: 'number' as const,
      min: 0,
      max: 100,
      value: r.error,
      required: true,
      onInput: (e: Event) => update(i, { error: inputText(e) }),
    },
    soak: { type: 'number' as const, min: 0, value: r.soak, onInput: (e: Event) => update(i, { soak: inputText(e) }) },
    gate: {
      type: 'checkbox' as const,
      checked: r.gate,
      onChange: (e: Event) => update(i, { gate: (e.currentTarget as HTMLInputElement).checked }),
    },
  })
  const remove = (i: number) => (
    <button type="button" disabled={rings.length === 1} onClick={() => onChange(rings.filter((_, j) => j !== i))}>
      Remove ring {i + 1}
    </button>
  )
  const add = (
    <button
      type="button"
      disabled={rings.length >= MAX_RINGS}
      onClick={() => onChange([...rings, newRing(rings.length + 1)])}
    >
      Add a ring
    </button>
  )

  if (layout === 'fieldsets')
    return (
      <fieldset>
        <legend>Rings, in order</legend>
        {rings.map((r, i) => {
          const f = fields(r, i)
          return (
            <fieldset key={i} class="ring-draft">
              <legend>Ring {i + 1}</legend>
              <label>
                Ring name
                <input {...f.name} />
              </label>
              <label>
                Devices
                <select {...f.kind}>
                  {KINDS.map(([kind, long]) => (
                    <option key={kind} value={kind}>
                      {long}
                    </option>
                  ))}
                </select>
              </label>
              {r.kind === 'rest' ? null : (
                <label>
                  {r.kind === 'groups' ? 'Groups (comma-separated)' : r.kind === 'percent' ? 'Percent' : 'Count'}
                  <input {...f.value} inputMode={r.kind === 'groups' ? 'text' : 'decimal'} />
                </label>
              )}
              <label>
                Success threshold (%)
                <input {...f.success} />
              </label>
              <label>
                Error threshold (%)
                <input {...f.error} />
              </label>
              <label>
                Soak (minutes)
                <input {...f.soak} />
              </label>
              <label class="check">
                <input {...f.gate} />
                Wait for approval before the next ring
              </label>
              {remove(i)}
            </fieldset>
          )
        })}
        {add}
      </fieldset>
    )

  return (
    <>
      <div class="table-wrap">
        <table class="compact">
          <caption class="sr-only">Ring template</caption>
          <thead>
            <tr>
              <th scope="col">Ring</th>
              <th scope="col">Devices</th>
              <th scope="col">Value</th>
              <th scope="col">Success ≥ %</th>
              <th scope="col">Halt at % failed</th>
              <th scope="col">Soak (min)</th>
              <th scope="col">Gate</th>
              <th scope="col">
                <span class="sr-only">Remove</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rings.map((r, i) => {
              const f = fields(r, i)
              return (
                <tr key={i}>
                  <td>
                    <input aria-label={`Ring ${i + 1} name`} {...f.name} />
                  </td>
                  <td>
                    <select aria-label={`Ring ${i + 1} devices`} {...f.kind}>
                      {KINDS.map(([kind, , short]) => (
                        <option key={kind} value={kind}>
                          {short}
                        </option>
                      ))}
                    </select>
                  </td>
                  <td>
                    {r.kind === 'rest' ? (
                      <span class="muted">—</span>
                    ) : (
                      <input aria-label={`Ring ${i + 1} ${r.kind}`} {...f.value} size={8} />
                    )}
                  </td>
                  <td>
                    <input aria-label={`Ring ${i + 1} success threshold`} {...f.success} />
                  </td>
                  <td>
                    <input aria-label={`Ring ${i + 1} error threshold`} {...f.error} />
                  </td>
                  <td>
                    <input aria-label={`Ring ${i + 1} soak minutes`} {...f.soak} />
                  </td>
                  <td>
                    <input aria-label={`Ring ${i + 1}: wait for approval`} {...f.gate} />
                  </td>
                  <td>{remove(i)}</td>
                </tr>
              )
            })}
          </tbody>
        </table>
      </div>
      <div class="actions">
        {add}
        {children}
      </div>
    </>
  )
}
