/** The Windows page (placeholder until it is built). */
export function WindowsPage() {
  return (
    <section>
      <h1>Windows</h1>
    </section>
  )
}
