import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { ImportService } from '../../services/imports.js';
import { parseJsonBody } from '../json-body.js';
import { refuseBody, resource } from '../resource.js';
import { storeHeaderOf } from '../store-header.js';

type IdParams = { Params: { id: string } };

/** POST /v2/images/{id}/import and the discovery document GET /v2/info/import. */
export function imageImportRoutes(imports: ImportService) {
  const start = async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    const body = imports.parseBody(parseJsonBody(request.body), storeHeaderOf(request));
    await imports.start(request.glimpse, request.params.id, body);
    return reply.code(202).send();
  };

  const info = async (request: FastifyRequest) => {
    refuseBody(request);
    return {
      'import-methods': {
        description: 'Import methods available.',
        type: 'array',
        value: imports.methods,
      },
    };
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images/:id/import', { POST: start });
    resource(app, '/v2/info/import', { GET: info });
  };
}
