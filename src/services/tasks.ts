/** Reading tasks: the tasks of an image, and the admin-only tasks API. */
import type { RequestContext } from '../domain/context.js';
import { ForbiddenError, InvalidInputError, NotFoundError } from '../domain/errors.js';
import { TASK_STATUSES, type TaskRecord, type TaskStatus } from '../domain/task.js';
import type { TaskListQuery, TaskRepository } from '../db/repository.js';
import type { ImageAccess } from './image-access.js';

const SORT_KEYS = ['created_at', 'updated_at', 'id', 'type', 'status'] as const;
const UUID_LIKE =
  /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

export class TaskService {
  constructor(
    private readonly access: ImageAccess,
    private readonly tasks: TaskRepository,
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
