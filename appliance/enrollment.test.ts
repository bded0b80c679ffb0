import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { verifyAgentCert } from '../shared/pki/index.ts'
import { DAY, HOUR, newTestAgent, openTestAppliance, rejectionCode, type TestAppliance } from './test-fixtures.ts'

describe('Enrollment', () => {
  let t: TestAppliance

  beforeEach(async () => {
    t = await openTestAppliance({ tokenTtlHours: 24 })
  })
  afterEach(async () => {
    await t.cleanup()
  })

  const request = (token: string, agent: { peerId: string; csr: string }, hostname = 'pc-01') => ({
    token,
    peerId: agent.peerId,
    csr: agent.csr,
    hostname,
  })

  it('a token works once; a second use is PSW_ERR_TOKEN_USED', async () => {
    const { token } = await t.core.enrollment.createToken()
    const first = await newTestAgent()
    await t.core.enrollment.enroll(request(token, first))
    const second = await newTestAgent()
    expect(await rejectionCode(t.core.enrollment.enroll(request(token, second, 'pc-02')))).toBe('PSW_ERR_TOKEN_USED')
    expect(t.core.devices.isMember(first.peerId)).toBe(true)
    expect(t.core.devices.isMember(second.peerId)).toBe(false)
  })

  it('a retry by the agent that used the token gets the same certificate; a stranger with its PeerId does not', async () => {
    const { token } = await t.core.enrollment.createToken()
    const agent = await newTestAgent()
    const first = await t.core.enrollment.enroll(request(token, agent))
    // the answer was lost: the same agent (same key, new CSR) asks again with the same token
    const again = await t.core.enrollment.enroll(request(token, agent))
    expect(again.certificate).toBe(first.certificate)
    expect(await t.core.devices.list()).toHaveLength(1)
    // someone else claiming that PeerId cannot prove it
    const other = await newTestAgent()
    expect(
      await rejectionCode(t.core.enrollment.enroll({ token, peerId: agent.peerId, csr: other.csr, hostname: 'x' })),
    ).toBe('PSW_ERR_CERT_PEER_MISMATCH')
  })

  it('PSW_ERR_TOKEN_INVALID: a well-formed token the appliance never issued', async () => {
    const agent = await newTestAgent()
    const code = await rejectionCode(t.core.enrollment.enroll(request('pst_thisTokenWasNeverIssuedByAnyone', agent)))
    expect(code).toBe('PSW_ERR_TOKEN_INVALID')
    expect(t.core.devices.isMember(agent.peerId)).toBe(false)
  })

  it('PSW_ERR_TOKEN_EXPIRED once the clock reaches expiresAt; valid until the moment before', async () => {
    const { token: early, expiresAt } = await t.core.enrollment.createToken({ ttlHours: 2 })
    const { token: late } = await t.core.enrollment.createToken({ ttlHours: 2 })
    expect(Date.parse(expiresAt)).toBe(t.clock.now() + 2 * HOUR)

    t.clock.advance(2 * HOUR - 1)
    await t.core.enrollment.enroll(request(early, await newTestAgent()))

    t.clock.advance(1)
    const agent = await newTestAgent()
    expect(await rejectionCode(t.core.enrollment.enroll(request(late, agent)))).toBe('PSW_ERR_TOKEN_EXPIRED')
    expect(t.core.devices.isMember(agent.peerId)).toBe(false)
  })

  it('uses the configured tokenTtlHours when none is given', async () => {
    const { token, expiresAt } = await t.core.enrollment.createToken({ label: 'rack 3' })
    expect(Date.parse(expiresAt)).toBe(t.clock.now() + 24 * HOUR)
    t.clock.advance(DAY + 1)
    expect(await rejectionCode(t.core.enrollment.enroll(request(token, await newTestAgent())))).toBe(
      'PSW_ERR_TOKEN_EXPIRED',
    )
  })

  it('PSW_ERR_CERT_PEER_MISMATCH for a CSR of another key, and the token is not consumed', async () => {
    const { token } = await t.core.enrollment.createToken()
    const victim = await newTestAgent()
    const attacker = await newTestAgent()
    // claims the victim's PeerId but can only sign with its own key
    const code = await rejectionCode(
      t.core.enrollment.enroll({ token, peerId: victim.peerId, csr: attacker.csr, hostname: 'evil' }),
    )
    expect(code).toBe('PSW_ERR_CERT_PEER_MISMATCH')
    expect(t.core.devices.isMember(victim.peerId)).toBe(false)
    expect(t.core.devices.isMember(attacker.peerId)).toBe(false)
    expect(await t.core.devices.list()).toEqual([])

    // the rightful agent can still use the token
    const res = await t.core.enrollment.enroll(request(token, victim))
    expect(res.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/)
    expect(t.core.devices.isMember(victim.peerId)).toBe(true)
  })

  it('PSW_ERR_CSR_INVALID for a garbage CSR, and the token is not consumed', async () => {
    const { token } = await t.core.enrollment.createToken()
    const agent = await newTestAgent()
    const garbage = `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(120)}\n-----END CERTIFICATE REQUEST-----\n`
    expect(await rejectionCode(t.core.enrollment.enroll({ ...request(token, agent), csr: garbage }))).toBe(
      'PSW_ERR_CSR_INVALID',
    )
    await t.core.enrollment.enroll(request(token, agent))
    expect(t.core.devices.isMember(agent.peerId)).toBe(true)
  })

  it('PSW_ERR_SCHEMA for input that does not match the request schema', async () => {
    const { token } = await t.core.enrollment.createToken()
    const agent = await newTestAgent()
    const bad: unknown[] = [
      undefined,
      null,
      'text',
      [],
      {},
      { ...request(token, agent), extra: 1 },
      { ...request(token, agent), hostname: '' },
      { ...request(token, agent), hostname: 42 },
      { ...request(token, agent), peerId: 'not a peer id' },
      { ...request(token, agent), token: 'short' },
    ]
    for (const input of bad) {
      expect(await rejectionCode(t.core.enrollment.enroll(input)), JSON.stringify(input)).toBe('PSW_ERR_SCHEMA')
    }
    // none of that consumed the token
    await t.core.enrollment.enroll(request(token, agent))
  })

  it('PSW_ERR_CONFLICT for a PeerId that is already enrolled; that token stays usable', async () => {
    const agent = await newTestAgent()
    const { token: first } = await t.core.enrollment.createToken()
    await t.core.enrollment.enroll(request(first, agent))
    const { token: second } = await t.core.enrollment.createToken()
    expect(await rejectionCode(t.core.enrollment.enroll(request(second, agent, 'pc-renamed')))).toBe('PSW_ERR_CONFLICT')
    expect((await t.core.devices.get(agent.peerId))?.hostname).toBe('pc-01')

    const other = await newTestAgent()
    await t.core.enrollment.enroll(request(second, other, 'pc-02'))
    expect(t.core.devices.isMember(other.peerId)).toBe(true)
  })

  it('the certificate verifies against the returned root and is bound to the PeerId', async () => {
    const { token } = await t.core.enrollment.createToken()
    const agent = await newTestAgent()
    const res = await t.core.enrollment.enroll(request(token, agent))
    expect(res.root).toBe(t.core.identity.rootPem)
    expect(res.appliance.signerCertificate).toBe(t.core.identity.signer.certificatePem)

    const verified = verifyAgentCert({
      certPem: res.certificate,
      rootPem: res.root,
      peerId: agent.peerId,
      now: t.clock.now(),
    })
    expect(verified.peerId).toBe(agent.peerId)

    const stranger = await newTestAgent()
    let code: string | undefined
    try {
      verifyAgentCert({ certPem: res.certificate, rootPem: res.root, peerId: stranger.peerId, now: t.clock.now() })
    } catch (err) {
      code = (err as { code?: string }).code
    }
    expect(code).toBe('PSW_ERR_CERT_PEER_MISMATCH')

    const device = await t.core.devices.get(agent.peerId)
    expect(device).toMatchObject({ peerId: agent.peerId, hostname: 'pc-01', certificatePem: res.certificate })
    expect(device?.enrolledAt).toBe(new Date(t.clock.now()).toISOString())
  })

  it('five concurrent enrollments with one token: exactly one succeeds, the others are PSW_ERR_TOKEN_USED', async () => {
    const { token } = await t.core.enrollment.createToken()
    const agents = await Promise.all(Array.from({ length: 5 }, () => newTestAgent()))
    const outcomes = await Promise.allSettled(
      agents.map((a, i) => t.core.enrollment.enroll(request(token, a, `pc-${i}`))),
    )
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1)
    const codes = outcomes.flatMap((o) => (o.status === 'rejected' ? [(o.reason as { code?: string }).code] : []))
    expect(codes).toEqual(Array(4).fill('PSW_ERR_TOKEN_USED'))
    expect(agents.filter((a) => t.core.devices.isMember(a.peerId))).toHaveLength(1)
    expect(await t.core.devices.list()).toHaveLength(1)
  })

  it('membership and token use are durable across close and reopen', async () => {
    const { token } = await t.core.enrollment.createToken()
    const agent = await newTestAgent()
    await t.core.enrollment.enroll(request(token, agent))

    const core = await t.reopen()
    expect(core.devices.isMember(agent.peerId)).toBe(true)
    expect((await core.devices.get(agent.peerId))?.hostname).toBe('pc-01')
    expect(await rejectionCode(core.enrollment.enroll(request(token, await newTestAgent())))).toBe('PSW_ERR_TOKEN_USED')
    // the agent that used it may still fetch its answer again (a lost response, a crash)
    expect((await core.enrollment.enroll(request(token, agent))).certificate).toBe(
      (await core.devices.get(agent.peerId))?.certificatePem,
    )
  })

  it('an unused token survives a restart', async () => {
    const { token } = await t.core.enrollment.createToken()
    const core = await t.reopen()
    const agent = await newTestAgent()
    await core.enrollment.enroll(request(token, agent))
    expect(core.devices.isMember(agent.peerId)).toBe(true)
  })

  it('stores only a hash of the token, never the token itself', async () => {
    const { token } = await t.core.enrollment.createToken({ label: 'lab' })
    await t.core.enrollment.enroll(request(token, await newTestAgent()))
    const stored: string[] = []
    for await (const [key, value] of t.core.db.iterate<unknown>('')) stored.push(key, JSON.stringify(value))
    expect(stored.some((s) => s.startsWith('token:'))).toBe(true)
    expect(stored.filter((s) => s.includes(token))).toEqual([])
  })
})
