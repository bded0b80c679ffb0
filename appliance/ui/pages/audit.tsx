/** The Audit page (placeholder until it is built). */
export function AuditPage() {
  return (
    <section>
      <h1>Audit</h1>
    </section>
  )
}
