import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { Config } from '../../config/schema.js';
import {
  MULTIPLE_CHOICES_PATH,
  VERSIONS_PATH,
  versionsDocument,
  type ApiVersion,
} from '../versions.js';

/** The versions document: 200 on /versions, 300 wherever negotiation found no version. */
export function versionRoutes(config: Config, versions: readonly ApiVersion[]) {
  return async (app: FastifyInstance): Promise<void> => {
    const send = (status: number) => async (request: FastifyRequest, reply: FastifyReply) => {
      const base = config.public_endpoint || `${request.protocol}://${request.host}`;
      return reply.code(status).send(versionsDocument(base.replace(/\/+$/, ''), versions));
    };
    app.all(VERSIONS_PATH, send(200));
    app.all(MULTIPLE_CHOICES_PATH, send(300));
    app.get('/healthcheck', async (_request, reply) => reply.type('text/plain').send('OK'));
  };
}
