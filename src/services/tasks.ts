/**
 * The tasks of an image, and the admin-only tasks API: listing, showing, and creating a task
 * of the legacy `import` type, which makes a new image and fills it from a URL.
 */
import { randomUUID } from 'node:crypto';

import type { RequestContext } from '../domain/context.js';
import { ForbiddenError, InvalidInputError, NotFoundError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import type { CreateRequest } from '../domain/image-input.js';
import { TASK_STATUSES, TASK_TYPES, type TaskRecord, type TaskStatus } from '../domain/task.js';
import type { TaskListQuery, TaskRepository } from '../db/repository.js';
import type { ImageAccess } from './image-access.js';
import type { ImportLock } from './import-lock.js';
import { CALLER_ROLES } from './imports.js';

/** What a legacy import task asks for (POST /v2/tasks with type `import`). */
export interface LegacyImportRequest {
  /** Where the data comes from: an http(s) URL that passes the web-download filter. */
  readonly importFrom: string;
  /** The new image, as a create request (disk_format qcow2, container bare when empty). */
  readonly image: CreateRequest;
  /** The input as given, kept with the task. */
  readonly input: Record<string, unknown>;
}

/** What creating a legacy import task needs besides the task queue. */
export interface LegacyImportDeps {
  readonly createImage: (context: RequestContext, request: CreateRequest) => Promise<ImageRecord>;
  readonly lock: ImportLock;
  /** Throws InvalidInputError when the URL may not be fetched. */
  readonly validateUri: (uri: string) => Promise<void>;
}

const SORT_KEYS = ['created_at', 'updated_at', 'id', 'type', 'status'] as const;
const UUID_LIKE =
  /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

export class TaskService {
  constructor(
    private readonly access: ImageAccess,
    private readonly tasks: TaskRepository,
    private readonly legacy: LegacyImportDeps,
  ) {}

  /** Tasks of an image the caller can see; non-admins only see their project's tasks. */
  async forImage(context: RequestContext, imageId: string): Promise<TaskRecord[]> {
    await this.access.find(context, imageId, 'The resource could not be found.');
    return this.tasks.listForImage(imageId, context.isAdmin ? null : context.projectId);
  }

  async list(context: RequestContext, query: TaskListQuery): Promise<TaskRecord[]> {
    this.#checkAccess(context);
    return this.tasks.list(query);
  }

  async show(context: RequestContext, id: string): Promise<TaskRecord> {
    this.#checkAccess(context);
    const task = UUID_LIKE.test(id) ? await this.tasks.get(id) : null;
    if (!task) throw new NotFoundError(`Task with the given id ${id} not found`);
    return task;
  }

  /**
   * POST /v2/tasks. Only `import` tasks are made here, as upstream's deprecated legacy import:
   * the image is created at once (queued, under the task's import lock) and the task fills it
   * from `import_from` like a web-download. The other types belong to the import and
   * locations APIs, which check their input; making them here would bypass those checks.
   */
  async createImport(context: RequestContext, request: LegacyImportRequest): Promise<TaskRecord> {
    try {
      await this.legacy.validateUri(request.importFrom);
    } catch (error) {
      if (!(error instanceof InvalidInputError)) throw error;
      throw new InvalidInputError(
        `URI for legacy import task does not pass filtering: ${request.importFrom}`,
      );
    }
    const image = await this.legacy.createImage(context, withLegacyDefaults(request.image));
    const task = newLegacyImportTask(context, image, request);
    // A new image: nobody holds its lock yet.
    await this.legacy.lock.queue(image.id, task, null);
    return task;
  }

  /** 403 unless the caller may use the tasks API; upstream checks it before anything else. */
  checkAccess(context: RequestContext): void {
    this.#checkAccess(context);
  }

  #checkAccess(context: RequestContext): void {
    if (!this.access.policy.allowsRule('tasks_api_access', context)) {
      throw new ForbiddenError('You are not authorized to complete tasks_api_access action.');
    }
  }
}

/** Query parameters of GET /v2/tasks, with upstream's 400s. */
export function parseTaskListQuery(
  pairs: Array<[string, string]>,
  limits: { limitDefault: number; limitMax: number },
): TaskListQuery {
  const get = (key: string) => pairs.findLast(([name]) => name === key)?.[1];

  const limitText = get('limit');
  const limit = limitText === undefined ? limits.limitDefault : Number(limitText);
  if (!Number.isInteger(limit) || limit < 0) {
    throw new InvalidInputError('limit param must be an integer');
  }
  const marker = get('marker') ?? null;
  if (marker !== null && !UUID_LIKE.test(marker)) {
    throw new InvalidInputError('Invalid marker format');
  }
  const sortKey = get('sort_key') ?? 'created_at';
  if (!(SORT_KEYS as readonly string[]).includes(sortKey)) {
    throw new InvalidInputError(
      `Invalid sort_key: ${sortKey}. It must be one of: ${SORT_KEYS.join(', ')}`,
    );
  }
  const sortDir = get('sort_dir') ?? 'desc';
  if (sortDir !== 'asc' && sortDir !== 'desc') {
    throw new InvalidInputError(`Invalid sort direction: ${sortDir}`);
  }
  const status = get('status') ?? null;
  if (status !== null && !(TASK_STATUSES as readonly string[]).includes(status)) {
    throw new InvalidInputError(`Invalid status value: ${status}`);
  }
  const type = get('type') ?? null;
  if (type !== null && type !== 'import') {
    throw new InvalidInputError(`Invalid type value: ${type}`);
  }
  return {
    limit: Math.min(limit, limits.limitMax),
    marker,
    sortKey: sortKey as TaskListQuery['sortKey'],
    sortDir,
    status: status as TaskStatus | null,
    type: type as 'import' | null,
  };
}

/** The body of POST /v2/tasks, checked as upstream's deserializer and schema check it. */
export function parseTaskCreateBody(body: unknown): {
  type: string;
  input: Record<string, unknown>;
} {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidInputError('Body expected in request.');
  }
  const fields = body as Record<string, unknown>;
  for (const key of ['type', 'input']) {
    if (!(key in fields)) throw new InvalidInputError(`Task '${key}' is required`);
  }
  const { type, input } = fields;
  if (typeof type !== 'string' || !(TASK_TYPES as readonly string[]).includes(type)) {
    throw new InvalidInputError(
      `Provided object does not match schema 'task': '${String(type)}' is not one of ` +
        `${TASK_TYPES.join(', ')}`,
    );
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidInputError("Provided object does not match schema 'task': input");
  }
  if (type !== 'import') {
    throw new InvalidInputError(
      `Tasks of type ${type} are created by the image import and locations APIs`,
    );
  }
  return { type, input: input as Record<string, unknown> };
}

/** Upstream gives an import without any image property these formats. */
function withLegacyDefaults(request: CreateRequest): CreateRequest {
  const empty =
    Object.keys(request.core).length === 0 &&
    request.tags.length === 0 &&
    Object.keys(request.properties).length === 0;
  if (!empty) return request;
  return { ...request, core: { disk_format: 'qcow2', container_format: 'bare' } };
}

function newLegacyImportTask(
  context: RequestContext,
  image: ImageRecord,
  request: LegacyImportRequest,
): TaskRecord {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    type: 'import',
    status: 'pending',
    owner: context.projectId,
    image_id: image.id,
    request_id: context.requestId,
    user_id: context.userId,
    input: { ...request.input, [CALLER_ROLES]: [...context.roles] },
    result: null,
    message: '',
    expires_at: null,
    created_at: now,
    updated_at: now,
  };
}
