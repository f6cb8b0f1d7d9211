import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import type { StoreService } from '../../services/stores.js';
import { refuseBody, resource } from '../resource.js';

type StoreImageParams = { Params: { storeId: string; imageId: string } };

/** GET /v2/info/stores, GET /v2/info/stores/detail and DELETE /v2/stores/{store}/{image}. */
export function storeRoutes(stores: StoreService) {
  const list = async (request: FastifyRequest) => {
    refuseBody(request);
    return { stores: stores.list() };
  };

  const detail = async (request: FastifyRequest) => {
    refuseBody(request);
    return { stores: stores.detail(request.glimpse) };
  };

  const remove = async (request: FastifyRequest<StoreImageParams>, reply: FastifyReply) => {
    refuseBody(request);
    const { storeId, imageId } = request.params;
    await stores.deleteFromStore(request.glimpse, storeId, imageId);
    return reply.code(204).send();
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/info/stores', { GET: list });
    resource(app, '/v2/info/stores/detail', { GET: detail });
    resource(app, '/v2/stores/:storeId/:imageId', { DELETE: remove });
  };
}
