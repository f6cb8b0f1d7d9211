import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { InvalidInputError } from '../../domain/errors.js';
import type { HttpDependencies } from '../server.js';
import { refuseBody, resource } from '../resource.js';

type TagParams = { Params: { id: string; tag: string } };

const MAX_TAG_LENGTH = 255;
const FOUR_BYTE_CHARACTER = /[\u{10000}-\u{10FFFF}]/u;

/** PUT and DELETE /v2/images/{id}/tags/{tag}. */
export function imageTagRoutes({ images }: HttpDependencies) {
  const add = async (request: FastifyRequest<TagParams>, reply: FastifyReply) => {
    const { id, tag } = request.params;
    checkTag(tag);
    await images.addTag(request.glimpse, id, tag);
    return reply.code(204).send();
  };

  const remove = async (request: FastifyRequest<TagParams>, reply: FastifyReply) => {
    refuseBody(request);
    await images.removeTag(request.glimpse, request.params.id, request.params.tag);
    return reply.code(204).send();
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images/:id/tags/:tag', { PUT: add, DELETE: remove });
  };
}

function checkTag(tag: string): void {
  if (tag.length > MAX_TAG_LENGTH) {
    const reason = `tag is longer than ${MAX_TAG_LENGTH} characters`;
    throw new InvalidInputError(`Provided object does not match schema 'image': ${reason}`);
  }
  if (FOUR_BYTE_CHARACTER.test(tag) || tag.includes('\u0000')) {
    throw new InvalidInputError("Param values can't contain 4 byte unicode.");
  }
}
