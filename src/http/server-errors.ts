/** Fastify glue for errors: the error handler, not-found handler and a shared sender. */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

import { GlimpseError } from '../domain/errors.js';
import { DEFAULT_EXPLANATIONS, renderError, statusOf } from './errors.js';

export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  explanation: string,
  detail = '',
): FastifyReply {
  const { contentType, body } = renderError(status, explanation, detail, request.headers.accept);
  reply.code(status).header('content-type', contentType);
  return reply.send(request.method === 'HEAD' ? '' : body);
}

/** Fastify's own errors that are the client's fault, with the status upstream would use. */
const FRAMEWORK_STATUS: Readonly<Record<string, number>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 413,
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 400,
  FST_ERR_CTP_EMPTY_JSON_BODY: 400,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 415,
  FST_ERR_BAD_URL: 400,
  FST_ERR_ASYNC_CONSTRAINT: 400,
};

export function handleError(
  error: FastifyError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (error instanceof GlimpseError) {
    const status = statusOf(error);
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    return sendError(request, reply, status, error.message, error.detail ?? '');
  }

  const code = (error as FastifyError).code ?? '';
  const status = FRAMEWORK_STATUS[code] ?? (error as FastifyError).statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    return sendError(request, reply, status, error.message);
  }

  if (clientLeft(error, request)) {
    // Nobody reads this answer; whatever the request had started has been undone.
    request.log.info({ err: error }, 'the client closed the connection mid-request');
    return sendError(request, reply, 400, 'The client closed the connection mid-request.');
  }

  request.log.error({ err: error }, 'unexpected error; this is a bug, please report it');
  return sendError(request, reply, 500, DEFAULT_EXPLANATIONS[500] as string);
}

/**
 * Whether the connection closed before the request body ended: the client hung up, or sent
 * framing so broken that Node closed it. Node then fails the body's stream with ECONNRESET.
 */
function clientLeft(error: Error, request: FastifyRequest): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ECONNRESET' && !request.raw.complete && request.raw.destroyed;
}

const ROUTABLE_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export function handleNotFound(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (!ROUTABLE_METHODS.has(request.method)) {
    return sendError(request, reply, 501, DEFAULT_EXPLANATIONS[501] as string);
  }
  return sendError(request, reply, 404, DEFAULT_EXPLANATIONS[404] as string);
}
