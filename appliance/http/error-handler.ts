import type { FastifyError, FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { isPswError } from '../../shared/errors.ts'

/**
 * Every API error is `{ code, message }` with a stable PSW_ERR_* code: schema failures,
 * malformed JSON and oversized bodies are 4xx, never a 500 or a crash (faults row 23).
 */
export function installErrorHandler(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    if (isPswError(err)) {
      if (err.status >= 500) log.error({ err, url: request.url }, 'request failed')
      return reply.status(err.status).send(err.toJSON())
    }
    if (err.validation) {
      return reply
        .status(400)
        .send({ code: 'PSW_ERR_SCHEMA', message: `request ${err.validationContext ?? ''} ${err.message}`.trim() })
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.status(413).send({ code: 'PSW_ERR_TOO_LARGE', message: 'request body too large' })
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.status(err.statusCode).send({ code: 'PSW_ERR_SCHEMA', message: err.message })
    }
    log.error({ err, url: request.url }, 'unexpected error')
    return reply.status(500).send({ code: 'PSW_ERR_INTERNAL', message: 'internal error' })
  })
  app.setNotFoundHandler((request, reply) => {
    reply.status(404).send({ code: 'PSW_ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}` })
  })
}
