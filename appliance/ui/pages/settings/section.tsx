import type { ComponentChildren } from 'preact'

/** A settings section: a heading with a focusable anchor the table of contents jumps to. */
export function Section({ id, title, children }: { id: string; title: string; children: ComponentChildren }) {
  return (
    <section class="settings-section" aria-labelledby={`${id}-h`}>
      <h2 id={`${id}-h`}>
        <span id={id} tabIndex={-1}>
          {title}
        </span>
      </h2>
      {children}
    </section>
  )
}
