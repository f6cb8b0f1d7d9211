/**
 * The Fastify instance: version negotiation, request ids, authentication, body decoding,
 * error rendering and the per-request log line. Routes live in ./routes, one file per resource.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyReply,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';

import type { Authenticator } from '../auth/authenticator.js';
import type { Config } from '../config/schema.js';
import type { RequestContext } from '../domain/context.js';
import type { Policy } from '../domain/policy.js';
import { UnauthorizedError } from '../domain/errors.js';
import type { ImageDataService } from '../services/image-data.js';
import type { ImageService } from '../services/images.js';
import type { ImportService } from '../services/imports.js';
import type { MemberService } from '../services/members.js';
import type { TaskService } from '../services/tasks.js';
import type { LocationService } from '../services/locations.js';
import type { StoreService } from '../services/stores.js';
import type { StoreRegistry } from '../stores/registry.js';
import type { ProjectQuotas } from '../quota/project-quotas.js';
import { HandlersInFlight } from './in-flight.js';
import { imageImportRoutes } from './routes/image-import.js';
import { taskRoutes } from './routes/tasks.js';
import { usageRoutes } from './routes/usage.js';
import { imageMemberRoutes } from './routes/image-members.js';
import { imageDataRoutes } from './routes/image-data.js';
import { imageRoutes } from './routes/images.js';
import { storeRoutes } from './routes/stores.js';
import { imageLocationRoutes } from './routes/image-locations.js';
import { imageTagRoutes } from './routes/image-tags.js';
import { schemaRoutes } from './routes/schemas.js';
import { versionRoutes } from './routes/versions.js';
import { handleError, handleNotFound, sendError } from './server-errors.js';
import { apiVersions, urlNegotiator } from './versions.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authentication hook on every /v2 request. */
    glimpse: RequestContext;
  }
}

export interface HttpDependencies {
  readonly config: Config;
  readonly logger: Logger;
  readonly authenticator: Authenticator;
  readonly policy: Policy;
  readonly images: ImageService;
  readonly data: ImageDataService;
  readonly members: MemberService;
  readonly imports: ImportService;
  readonly tasks: TaskService;
  readonly quotas: ProjectQuotas;
  readonly stores: StoreRegistry;
  readonly storeInfo: StoreService;
  readonly locations: LocationService;
}

const REQUEST_ID_HEADER = 'x-openstack-request-id';

export async function buildHttpServer(deps: HttpDependencies): Promise<FastifyInstance> {
  const { config } = deps;
  const versions = apiVersions(deps.stores.multiStore);
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new RequestLog(),
    genReqId: (request) => requestIdOf(request, config.max_request_id_length),
    rewriteUrl: urlNegotiator(versions),
    exposeHeadRoutes: false,
    bodyLimit: config.max_json_body_bytes,
    // A stalled client is cut off after this much idle time.
    connectionTimeout: config.client_idle_timeout_seconds * 1000,
    // Long ids must reach the routes, which answer 404 as upstream does (not 414).
    routerOptions: { maxParamLength: 2048 },
    frameworkErrors: (error, request, reply) => handleError(error, request, reply),
  });

  app.decorate('handlersInFlight', new HandlersInFlight());
  app.decorateRequest('glimpse', null as unknown as RequestContext);
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(handleNotFound);
  registerBodyParsers(app);
  registerHooks(app, deps);

  await app.register(versionRoutes(config, versions));
  await app.register(schemaRoutes(config));
  await app.register(imageRoutes(deps));
  await app.register(imageTagRoutes(deps));
  await app.register(imageMemberRoutes(deps.members));
  await app.register(imageImportRoutes(deps.imports));
  await app.register(usageRoutes(deps.quotas));
  await app.register(storeRoutes(deps.storeInfo));
  await app.register(imageLocationRoutes(deps.locations));
  await app.register(
    taskRoutes(deps.tasks, {
      limitDefault: config.limit_param_default,
      limitMax: config.api_limit_max,
      publicEndpoint: config.public_endpoint,
      formats: { diskFormats: config.disk_formats, containerFormats: config.container_formats },
    }),
  );
  await app.register(
    imageDataRoutes({ data: deps.data, verifyDownloads: config.verify_download_checksum }),
  );
  return app;
}

/** One log line per request, when it completes, with its id, route, status and duration. */
class RequestLog extends LogController {
  constructor() {
    super({ requestIdLogLabel: 'request_id' });
  }

  override incomingRequest(): void {}

  override requestCompleted(
    _error: Error | null | undefined,
    request: FastifyRequest,
    reply: FastifyReply,
  ): void {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? null,
        status: reply.statusCode,
        duration_ms: Math.round(reply.elapsedTime * 100) / 100,
      },
      'request completed',
    );
  }
}

/** Upstream adopts a client's request id (adding the req- prefix) instead of minting one. */
function requestIdOf(request: IncomingMessage, maxLength: number): string {
  const incoming = request.headers[REQUEST_ID_HEADER];
  const value = Array.isArray(incoming) ? incoming[0] : incoming;
  if (value && value.length <= maxLength && /^[\x21-\x7e]+$/.test(value)) {
    return value.startsWith('req-') ? value : `req-${value}`;
  }
  return `req-${randomUUID()}`;
}

/**
 * JSON is decoded by the routes (upstream ignores the JSON Content-Type), so every media type
 * is collected as a bounded Buffer here.
 */
function registerBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => {
    done(null, body);
  });
}

function registerHooks(app: FastifyInstance, deps: HttpDependencies): void {
  app.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
    if (tooLongRequestId(request, deps.config.max_request_id_length)) {
      return sendError(request, reply, 431, 'The request id is too long.');
    }
    if (request.url.startsWith('/v2/')) await authenticate(request, reply, deps);
  });
}

function tooLongRequestId(request: FastifyRequest, maxLength: number): boolean {
  const incoming = request.headers[REQUEST_ID_HEADER];
  const value = Array.isArray(incoming) ? incoming[0] : incoming;
  return value !== undefined && value.length > maxLength;
}

async function authenticate(
  request: FastifyRequest,
  reply: FastifyReply,
  { authenticator, policy }: HttpDependencies,
) {
  let identity;
  try {
    identity = await authenticator.authenticate(request.headers);
  } catch (error) {
    if (error instanceof UnauthorizedError && authenticator.challenge) {
      reply.header('www-authenticate', authenticator.challenge);
    }
    throw error;
  }
  // Admin status is itself a policy rule (context_is_admin), so an override file can move it.
  const context: RequestContext = { ...identity, requestId: request.id, isAdmin: false };
  request.glimpse = { ...context, isAdmin: policy.allowsRule('context_is_admin', context) };
}
