import type { FastifyRequest } from 'fastify';

/**
 * The store a request names in X-Image-Meta-Store (upload, stage, import), if any. Only the
 * first value counts when the header is repeated; a blank value names none.
 */
export function storeHeaderOf(request: FastifyRequest): string | null {
  const header = request.headers['x-image-meta-store'];
  const value = Array.isArray(header) ? header[0] : header;
  return value === undefined || value.trim() === '' ? null : value.trim();
}
