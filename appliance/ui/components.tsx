import type { ComponentChildren } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import { ApiError } from './api.ts'

/** No focus move on the first page of a load: Tab must reach the skip link first. */
let firstTitle = true

/**
 * The page's heading; takes focus when the user navigates to another page (screen readers
 * hear the new page, and Tab continues from there).
 */
export function PageTitle({ children }: { children: ComponentChildren }) {
  const ref = useRef<HTMLHeadingElement>(null)
  useEffect(() => {
    if (!firstTitle) ref.current?.focus({ preventScroll: true })
    firstTitle = false
    document.title = `${ref.current?.textContent ?? ''} · patchswarm`
  }, [])
  return (
    <h1 ref={ref} tabIndex={-1} class="page-title">
      {children}
    </h1>
  )
}

/** An API error as the operator should see it: message, code, and what to do for the common ones. */
export function ErrorBox({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null
  const e = error instanceof ApiError ? error : new ApiError(0, 'UI', String((error as Error)?.message ?? error))
  const hint =
    e.status === 403
      ? 'Your role may not do this.'
      : e.status === 429
        ? 'Too many attempts: wait a few minutes.'
        : e.status === 0
          ? 'Check that the appliance is running and reachable.'
          : undefined
  return (
    <div class="error" role="alert">
      <strong>{title ?? 'Something went wrong'}:</strong> {e.message}{' '}
      <code class="code" title="error code">
        {e.code}
      </code>
      {hint ? <p>{hint}</p> : null}
    </div>
  )
}

export function Loading({ what = 'Loading' }: { what?: string }) {
  return (
    <p class="muted" role="status">
      {what}…
    </p>
  )
}

/** A labelled progress bar (the label is what screen readers read). */
export function Progress({
  value,
  max,
  label,
  tone = 'ok',
}: {
  value: number
  max: number
  label: string
  tone?: 'ok' | 'warn' | 'bad'
}) {
  const pct = max > 0 ? Math.min(100, Math.max(0, (100 * value) / max)) : 0
  // An SVG bar: the CSP allows no inline styles, so widths cannot be set with style="".
  return (
    <svg
      class={`bar bar-${tone}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={max}
      aria-valuenow={value}
      viewBox="0 0 100 10"
      preserveAspectRatio="none"
    >
      <rect class="bar-bg" x="0" y="0" width="100" height="10" />
      <rect class="bar-fg" x="0" y="0" width={pct} height="10" />
    </svg>
  )
}

export function Badge({ kind, children }: { kind: string; children: ComponentChildren }) {
  return <span class={`badge badge-${kind.replace(/[^a-z-]/g, '')}`}>{children}</span>
}

/**
 * A button that asks first, in a modal dialog (focus is trapped by the browser; Escape
 * cancels). `extra` renders more inputs in the dialog; `onConfirm` gets the form's values.
 */
export function ConfirmButton({
  label,
  title,
  message,
  confirmLabel,
  danger,
  disabled,
  extra,
  onConfirm,
}: {
  label: string
  title: string
  message: ComponentChildren
  confirmLabel?: string
  danger?: boolean
  disabled?: boolean
  extra?: ComponentChildren
  onConfirm: (form: FormData) => Promise<unknown>
}) {
  const dialog = useRef<HTMLDialogElement>(null)
  // One IDREF: an id with spaces would be read as several (and name nothing).
  const dialogId = `dlg-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<unknown>(undefined)
  const open = () => {
    setError(undefined)
    dialog.current?.showModal()
  }
  const submit = async (e: Event) => {
    e.preventDefault()
    setBusy(true)
    try {
      await onConfirm(new FormData(e.currentTarget as HTMLFormElement))
      dialog.current?.close()
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  return (
    <>
      <button type="button" class={danger ? 'danger' : ''} disabled={disabled} onClick={open}>
        {label}
      </button>
      <dialog ref={dialog} aria-labelledby={dialogId}>
        <form onSubmit={submit}>
          <h2 id={dialogId}>{title}</h2>
          <div>{message}</div>
          {extra}
          <ErrorBox error={error} title="Not done" />
          <div class="actions">
            <button type="button" onClick={() => dialog.current?.close()}>
              Cancel
            </button>
            <button type="submit" class={danger ? 'danger' : 'primary'} disabled={busy}>
              {busy ? 'Working…' : (confirmLabel ?? label)}
            </button>
          </div>
        </form>
      </dialog>
    </>
  )
}

/** Runs an action, shows its error, disables itself while running. */
export function ActionButton({
  label,
  onClick,
  disabled,
  kind,
}: {
  label: string
  onClick: () => Promise<unknown>
  disabled?: boolean
  kind?: 'primary' | 'danger'
}) {
  const { busy, error, run } = useAction()
  return (
    <span class="action">
      <button type="button" class={kind ?? ''} disabled={disabled || busy} onClick={() => run(onClick)}>
        {label}
      </button>
      <ErrorBox error={error} title={`${label} failed`} />
    </span>
  )
}

/**
 * An in-page link's handler: moves to (and focuses) the element with this id without touching
 * the hash, which is the route.
 */
export const jumpTo = (id: string) => () => {
  const el = document.getElementById(id)
  el?.scrollIntoView()
  el?.focus({ preventScroll: true })
}

/** A message under a field, tied to it with aria-describedby (see invalidAttrs). */
export function FieldError({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null
  return (
    <span class="error-inline" id={id} role="alert">
      {message}
    </span>
  )
}

/** The attributes that mark a field invalid and point it at its FieldError `id`, when there is a message. */
export const invalidAttrs = (msg: string | undefined, id: string) =>
  msg ? { 'aria-invalid': true as const, 'aria-describedby': id } : {}

/**
 * The state of an async action (a form's submit, a button's request): `run` clears the error and
 * marks it busy while the action runs, then keeps the error it threw for an ErrorBox.
 */
export function useAction() {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<unknown>(undefined)
  const run = async (action: () => Promise<unknown>) => {
    setBusy(true)
    setError(undefined)
    try {
      await action()
    } catch (err) {
      setError(err)
    } finally {
      setBusy(false)
    }
  }
  return { busy, error, setError, run }
}
