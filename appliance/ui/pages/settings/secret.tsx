import type { ComponentChildren } from 'preact'
import { useRef, useState } from 'preact/hooks'

/** A secret shown once, with a copy button. */
export function Secret({ label, value, note }: { label: string; value: string; note: ComponentChildren }) {
  const [copied, setCopied] = useState<string>('')
  const ref = useRef<HTMLTextAreaElement>(null)
  return (
    <div class="secret">
      <label>
        {label}
        <textarea ref={ref} class="mono" readOnly rows={Math.min(6, Math.ceil(value.length / 90) + 1)} value={value} />
      </label>
      <p class="muted">{note}</p>
      <div class="actions">
        <button
          type="button"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(value)
              setCopied('Copied to the clipboard.')
            } catch {
              ref.current?.select()
              setCopied('Selected: press Ctrl+C to copy.')
            }
          }}
        >
          Copy
        </button>
        <span role="status">{copied}</span>
      </div>
    </div>
  )
}
