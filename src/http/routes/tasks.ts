import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { InvalidInputError } from '../../domain/errors.js';
import { ImageSchemaValidator, isPlainObject, parseCreateBody } from '../../domain/image-input.js';
import type { TaskRecord } from '../../domain/task.js';
import { CALLER_ROLES } from '../../services/imports.js';
import {
  parseTaskCreateBody,
  parseTaskListQuery,
  type TaskService,
} from '../../services/tasks.js';
import { isoSeconds } from '../image-view.js';
import { parseJsonBody } from '../json-body.js';
import { refuseBody, resource } from '../resource.js';
import { queryPairs } from './images.js';

type IdParams = { Params: { id: string } };

/** Upstream serializes image task rows as raw database rows: microseconds, no zone. */
function rowTime(value: string | null): string | null {
  return value === null ? null : `${value.slice(0, 23)}000`;
}

/** The task input as clients know it, without what only the runner needs. */
function visibleInput(task: TaskRecord): Record<string, unknown> {
  const input = { ...task.input };
  delete input[CALLER_ROLES];
  return input;
}

function imageTaskView(task: TaskRecord) {
  return {
    id: task.id,
    type: task.type,
    status: task.status,
    owner: task.owner,
    expires_at: rowTime(task.expires_at),
    created_at: rowTime(task.created_at),
    updated_at: rowTime(task.updated_at),
    deleted_at: null,
    deleted: false,
    image_id: task.image_id,
    request_id: task.request_id,
    user_id: task.user_id,
    input: visibleInput(task),
    result: task.result,
    message: task.message,
  };
}

function taskStub(task: TaskRecord): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: task.id,
    type: task.type,
    status: task.status,
    owner: task.owner,
    created_at: isoSeconds(task.created_at),
    updated_at: isoSeconds(task.updated_at),
    self: `/v2/tasks/${task.id}`,
    schema: '/v2/schemas/task',
  };
  if (task.image_id !== null) view.image_id = task.image_id;
  if (task.request_id !== null) view.request_id = task.request_id;
  if (task.user_id !== null) view.user_id = task.user_id;
  if (task.expires_at !== null) view.expires_at = isoSeconds(task.expires_at);
  return view;
}

function taskView(task: TaskRecord): Record<string, unknown> {
  return {
    ...taskStub(task),
    input: visibleInput(task),
    result: task.result,
    message: task.message,
  };
}

export interface TaskRouteOptions {
  readonly limitDefault: number;
  readonly limitMax: number;
  /** Base of the Location header; empty: taken from the request. */
  readonly publicEndpoint: string;
  /** Accepted disk and container formats, for the image a legacy import creates. */
  readonly formats: ConstructorParameters<typeof ImageSchemaValidator>[0];
}

/** GET /v2/images/{id}/tasks and the admin-only tasks API. */
export function taskRoutes(tasks: TaskService, limits: TaskRouteOptions) {
  const imageSchema = new ImageSchemaValidator(limits.formats);
  const forImage = async (request: FastifyRequest<IdParams>) => {
    refuseBody(request);
    const found = await tasks.forImage(request.glimpse, request.params.id);
    return { tasks: found.map(imageTaskView) };
  };

  const list = async (request: FastifyRequest) => {
    refuseBody(request);
    const pairs = queryPairs(request.url);
    const query = parseTaskListQuery(pairs, limits);
    const found = await tasks.list(request.glimpse, query);
    const body: Record<string, unknown> = {
      tasks: found.map(taskStub),
      first: '/v2/tasks',
      schema: '/v2/schemas/tasks',
    };
    const last = found.at(-1);
    if (last && found.length === query.limit) {
      const params = new URLSearchParams(pairs.filter(([key]) => key !== 'marker'));
      params.append('marker', last.id);
      body.next = `/v2/tasks?${params.toString()}`;
    }
    return body;
  };

  const create = async (request: FastifyRequest, reply: FastifyReply) => {
    // As upstream, access is checked before the body is looked at.
    tasks.checkAccess(request.glimpse);
    const { input } = parseTaskCreateBody(parseJsonBody(request.body));
    const importFrom = input.import_from;
    if (typeof importFrom !== 'string' || importFrom === '') {
      throw new InvalidInputError(`Invalid location: ${String(importFrom)}`);
    }
    const properties = input.image_properties ?? {};
    if (!isPlainObject(properties)) throw new InvalidInputError('Invalid image_properties');
    const task = await tasks.createImport(request.glimpse, {
      importFrom,
      image: parseCreateBody(properties, imageSchema),
      input,
    });
    const base = limits.publicEndpoint || `${request.protocol}://${request.host}`;
    return reply
      .code(201)
      .header('location', `${base.replace(/\/+$/, '')}/v2/tasks/${task.id}`)
      .send(taskView(task));
  };

  const show = async (request: FastifyRequest<IdParams>) => {
    refuseBody(request);
    return taskView(await tasks.show(request.glimpse, request.params.id));
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images/:id/tasks', { GET: forImage });
    resource(app, '/v2/tasks', { GET: list, POST: create });
    resource(app, '/v2/tasks/:id', { GET: show });
  };
}
