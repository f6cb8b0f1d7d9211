import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { ProjectQuotas } from '../../quota/project-quotas.js';
import { refuseBody, resource } from '../resource.js';

/**
 * GET /v2/info/usage: the caller's project usage and limit of each Keystone unified limit
 * (sizes in MiB); `{"usage": {}}` when unified limits are off. No policy, as upstream.
 */
export function usageRoutes(quotas: ProjectQuotas) {
  const usage = async (request: FastifyRequest) => {
    refuseBody(request);
    return { usage: await quotas.report(request.glimpse.projectId) };
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/info/usage', { GET: usage });
  };
}
