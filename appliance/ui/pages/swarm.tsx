/** The Swarm page (placeholder until it is built). */
export function SwarmPage() {
  return (
    <section>
      <h1>Swarm</h1>
    </section>
  )
}
