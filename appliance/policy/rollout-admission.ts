import { StateError } from '../../shared/errors.ts'
import type { RolloutSpecT } from '../rollout/rollout-types.ts'
import type { Approval } from './approvals.ts'

/**
 * Whether policy lets a rollout start, pure: a patch declined site-wide is never deployed, and
 * one declined for a group is not deployed there — so a rollout that targets that group, or
 * every device, is refused (PSW_ERR_PATCH_DECLINED, naming the groups). Creating a rollout is
 * itself the operator's approval otherwise.
 */
export function checkRolloutAdmission(
  spec: Pick<RolloutSpecT, 'bundleId' | 'target'>,
  approvals: readonly Approval[],
): void {
  const latest = new Map<string, Approval>()
  for (const a of [...approvals].filter((x) => x.bundleId === spec.bundleId).sort((x, y) => x.at.localeCompare(y.at)))
    latest.set(a.group, a)
  const declined = (group: string) => latest.get(group)?.decision === 'decline'
  if (declined('*'))
    throw new StateError('PSW_ERR_PATCH_DECLINED', 'the patch is declined site-wide; undo the decline to deploy it', {
      details: { groups: ['*'] },
    })
  const groups =
    spec.target === 'all'
      ? [...latest.values()].filter((a) => a.group !== '*' && a.decision === 'decline').map((a) => a.group)
      : spec.target.filter(declined)
  if (groups.length > 0)
    throw new StateError(
      'PSW_ERR_PATCH_DECLINED',
      `the patch is declined for ${groups.join(', ')}; ${spec.target === 'all' ? 'target the other groups by name' : `leave ${groups.length > 1 ? 'those groups' : 'that group'} out of the target`} or undo the decline`,
      { details: { groups } },
    )
}
