/** The Policies page (placeholder until it is built). */
export function PoliciesPage() {
  return (
    <section>
      <h1>Policies</h1>
    </section>
  )
}
