import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { LocationService } from '../../services/locations.js';
import { parseJsonBody } from '../json-body.js';
import { refuseBody, resource } from '../resource.js';

type IdParams = { Params: { id: string } };

/**
 * POST /v2/images/{id}/locations (202: a task adds the location and hashes the data) and
 * GET /v2/images/{id}/locations (a bare JSON array, as upstream answers).
 */
export function imageLocationRoutes(locations: LocationService) {
  const add = async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    await locations.add(request.glimpse, request.params.id, parseJsonBody(request.body));
    return reply.code(202).send();
  };

  const list = async (request: FastifyRequest<IdParams>) => {
    refuseBody(request);
    return locations.list(request.glimpse, request.params.id);
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images/:id/locations', { POST: add, GET: list });
  };
}
