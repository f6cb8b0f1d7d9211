import type { FastifyInstance } from 'fastify';

import type { Config } from '../../config/schema.js';
import { imageSchema, imagesSchema } from '../../domain/schemas/image.js';
import {
  memberSchema,
  membersSchema,
  taskSchema,
  tasksSchema,
} from '../../domain/schemas/member-task.js';
import { refuseBody, resource } from '../resource.js';

/** GET /v2/schemas/{image,images,member,members,task,tasks}: documents built once at start. */
export function schemaRoutes(config: Config) {
  const formats = {
    diskFormats: config.disk_formats,
    containerFormats: config.container_formats,
  };
  const documents: Record<string, string> = {
    image: JSON.stringify(imageSchema(formats)),
    images: JSON.stringify(imagesSchema(formats)),
    member: JSON.stringify(memberSchema()),
    members: JSON.stringify(membersSchema()),
    task: JSON.stringify(taskSchema()),
    tasks: JSON.stringify(tasksSchema()),
  };

  return async (app: FastifyInstance): Promise<void> => {
    for (const [name, document] of Object.entries(documents)) {
      resource(app, `/v2/schemas/${name}`, {
        GET: async (request, reply) => {
          refuseBody(request);
          return reply.type('application/json').send(document);
        },
      });
    }
  };
}
