/**
 * Route registration per resource path. Upstream answers a known path with an unsupported
 * method with 405 and an Allow header (HEAD included, as it is never routed), so every path
 * registers a responder for the methods it does not implement.
 */
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  RouteGenericInterface,
  RouteShorthandOptions,
} from 'fastify';

import { InvalidInputError } from '../domain/errors.js';
import type { HandlersInFlight } from './in-flight.js';
import { sendError } from './server-errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Set by the server before any route is registered. */
    handlersInFlight: HandlersInFlight;
  }
}

export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
/** A route handler; R types the path parameters and query string it reads. */
type Handler<R extends RouteGenericInterface> = (
  request: FastifyRequest<R>,
  reply: FastifyReply,
) => Promise<unknown>;

export interface MethodSpec<R extends RouteGenericInterface = RouteGenericInterface> {
  readonly handler: Handler<R>;
  readonly options?: RouteShorthandOptions;
}

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

export function resource<R extends RouteGenericInterface = RouteGenericInterface>(
  app: FastifyInstance,
  path: string,
  methods: Partial<Record<Method, Handler<R> | MethodSpec<R>>>,
): void {
  const allowed = Object.keys(methods);
  for (const [method, spec] of Object.entries(methods)) {
    const { handler, options } =
      typeof spec === 'function' ? { handler: spec, options: {} } : spec;
    // The path declares the parameters R names; Fastify cannot check one against the other.
    const untyped = handler as unknown as Handler<RouteGenericInterface>;
    const inFlight = app.handlersInFlight;
    app.route({
      ...options,
      method,
      url: path,
      handler: (request, reply) => inFlight.track(() => untyped(request, reply)),
    });
  }

  const refused = ALL_METHODS.filter((method) => !allowed.includes(method));
  app.route({
    method: refused,
    url: path,
    handler: async (request, reply) => {
      reply.header('allow', allowed.join(', '));
      sendError(request, reply, 405, 'The method is not allowed for this resource.');
    },
  });
}

/** Upstream refuses bodies on reads, deletes and actions. */
export function refuseBody(request: FastifyRequest): void {
  const length = Number(request.headers['content-length'] ?? 0);
  if (length > 0 || request.headers['transfer-encoding'] !== undefined) {
    throw new InvalidInputError('A body is not expected with this request.');
  }
}
