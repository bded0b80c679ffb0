import { jumpTo, PageTitle } from '../../components.tsx'
import { GroupsSection } from './groups.tsx'
import { PlanSection } from './plan.tsx'
import { RulesSection } from './rules.tsx'
import { TagsSection } from './tags.tsx'

/**
 * Policies: device groups (filters over tags, tier, OS, host name), auto-approval rules,
 * device tags and tiers, and the approval plan per group with "Deploy the plan". Reads for
 * every role; changes for operators (the server enforces it, the page hides the forms).
 */
export function PoliciesPage() {
  return (
    <section>
      <PageTitle>Policies</PageTitle>
      <nav aria-label="On this page" class="toc">
        {(
          [
            ['p-groups', 'Groups'],
            ['p-rules', 'Auto-approval rules'],
            ['p-tags', 'Device tags and tiers'],
            ['p-plan', 'Plan'],
          ] as const
        ).map(([id, label], i) => (
          <span key={id}>
            {i > 0 ? ' · ' : ''}
            <button type="button" class="link" onClick={jumpTo(id)}>
              {label}
            </button>
          </span>
        ))}
      </nav>
      <GroupsSection />
      <RulesSection />
      <TagsSection />
      <PlanSection />
    </section>
  )
}
