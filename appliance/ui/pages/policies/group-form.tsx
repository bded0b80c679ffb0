import { api, post } from '../../api.ts'
import { ErrorBox, FieldError, invalidAttrs, useAction } from '../../components.tsx'
import { errorFor, listOf } from '../../field-errors.ts'
import { type GroupDef, type GroupMatch, groupUpdate, TIERS } from '../../policy-types.ts'

export function GroupForm({ group, done }: { group: GroupDef | undefined; done: () => void }) {
  const { busy, error, run } = useAction()
  const m = group?.match ?? {}
  const submit = async (e: Event) => {
    e.preventDefault()
    const f = new FormData(e.currentTarget as HTMLFormElement)
    const text = (k: string) => String(f.get(k) ?? '').trim()
    const all = listOf(text('tagsAll'))
    const any = listOf(text('tagsAny'))
    const tiers = f.getAll('tiers').map(String)
    const os = listOf(text('os'))
    const peerIds = listOf(text('peerIds'))
    const match: GroupMatch = {
      ...(all.length || any.length ? { tags: { ...(all.length ? { all } : {}), ...(any.length ? { any } : {}) } } : {}),
      ...(tiers.length ? { tiers } : {}),
      ...(os.length ? { os } : {}),
      ...(text('hostnamePattern') ? { hostnamePattern: text('hostnamePattern') } : {}),
      ...(peerIds.length ? { peerIds } : {}),
    }
    const description = text('description')
    await run(async () => {
      if (group) {
        await api(
          'PUT',
          `/api/v1/groups/${encodeURIComponent(group.id)}`,
          groupUpdate(group, { name: text('name'), description, match }),
        )
      } else {
        await post('/api/v1/groups', {
          id: text('id'),
          name: text('name'),
          ...(description ? { description } : {}),
          match,
        })
      }
      done()
    })
  }
  const err = (...fields: string[]) => errorFor(error, ...fields)
  const fieldErr = (id: string, ...fields: string[]) => <FieldError id={`ge-${id}`} message={err(...fields)} />
  return (
    <form class="card stack" onSubmit={submit} aria-labelledby="group-form">
      <h3 id="group-form">{group ? `Edit group ${group.id}` : 'New group'}</h3>
      <div class="grid2">
        {group ? null : (
          <label>
            Group id <span class="muted">(lower case letters, digits, _ -)</span>
            <input
              name="id"
              required
              maxLength={64}
              pattern="[a-z0-9][a-z0-9_\-]*"
              {...invalidAttrs(err('id'), 'ge-id')}
            />
            {fieldErr('id', 'id')}
          </label>
        )}
        <label>
          Group name
          <input name="name" required maxLength={100} defaultValue={group?.name ?? ''} />
          {fieldErr('name', 'name')}
        </label>
        <label>
          Description
          <input name="description" maxLength={500} defaultValue={group?.description ?? ''} />
        </label>
      </div>
      <fieldset>
        <legend>Members: devices matching every filter given (none: every device)</legend>
        <div class="grid2">
          <label>
            Has all of these tags <span class="muted">(comma-separated)</span>
            <input
              name="tagsAll"
              defaultValue={m.tags?.all?.join(', ') ?? ''}
              {...invalidAttrs(err('match.tags'), 'ge-tags')}
            />
          </label>
          <label>
            Has any of these tags
            <input name="tagsAny" defaultValue={m.tags?.any?.join(', ') ?? ''} />
            {fieldErr('tags', 'match.tags')}
          </label>
          <label>
            OS <span class="muted">(globs: linux, windows, ubuntu-24.04, debian*)</span>
            <input name="os" defaultValue={m.os?.join(', ') ?? ''} {...invalidAttrs(err('match.os'), 'ge-os')} />
            {fieldErr('os', 'match.os')}
          </label>
          <label>
            Host name pattern <span class="muted">(glob: ber-*)</span>
            <input
              name="hostnamePattern"
              defaultValue={m.hostnamePattern ?? ''}
              {...invalidAttrs(err('match.hostnamePattern'), 'ge-host')}
            />
            {fieldErr('host', 'match.hostnamePattern')}
          </label>
        </div>
        <fieldset class="inline-checks">
          <legend>Tier</legend>
          {TIERS.map((t) => (
            <label class="check" key={t}>
              <input type="checkbox" name="tiers" value={t} defaultChecked={m.tiers?.includes(t) ?? false} /> {t}
            </label>
          ))}
        </fieldset>
        <label>
          Only these devices <span class="muted">(PeerIds, comma- or space-separated; optional)</span>
          <textarea
            name="peerIds"
            rows={2}
            defaultValue={m.peerIds?.join('\n') ?? ''}
            {...invalidAttrs(err('match.peerIds'), 'ge-peers')}
          />
          {fieldErr('peers', 'match.peerIds')}
        </label>
      </fieldset>
      <ErrorBox error={error} title="The group was not saved" />
      <div class="actions">
        <button type="button" onClick={done}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : group ? 'Save group' : 'Create group'}
        </button>
      </div>
    </form>
  )
}
