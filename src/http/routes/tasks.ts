import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { TaskRecord } from '../../domain/task.js';
import { CALLER_ROLES } from '../../services/imports.js';
import { parseTaskListQuery, type TaskService } from '../../services/tasks.js';
import { isoSeconds } from '../image-view.js';
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

/** GET /v2/images/{id}/tasks and the admin-only tasks API. */
export function taskRoutes(
  tasks: TaskService,
  limits: { limitDefault: number; limitMax: number },
) {
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

  const show = async (request: FastifyRequest<IdParams>) => {
    refuseBody(request);
    return taskView(await tasks.show(request.glimpse, request.params.id));
  };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images/:id/tasks', { GET: forImage });
    resource(app, '/v2/tasks', { GET: list });
    resource(app, '/v2/tasks/:id', { GET: show });
  };
}
