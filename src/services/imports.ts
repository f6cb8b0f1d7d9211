/**
 * POST /v2/images/{id}/import: upstream's checks in upstream's order, then a task in the
 * shared queue and the image's import lock (the `os_glance_import_task` property, set only if
 * absent, so two imports of one image cannot both start). The work itself is ImportFlow's.
 */
import { randomUUID } from 'node:crypto';

import type { RequestContext } from '../domain/context.js';
import { ConflictError, InvalidInputError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import { isPlainObject } from '../domain/image-input.js';
import type { TaskRecord } from '../domain/task.js';
import type { TaskRepository } from '../db/repository.js';
import type { ProjectQuotas } from '../quota/project-quotas.js';
import type { ImageAccess } from './image-access.js';

export const IMPORT_LOCK = 'os_glance_import_task';

/** Key of the task input that records the caller's roles for the runner. */
export const CALLER_ROLES = 'caller_roles';

/** A lock older than this is taken to belong to a task that will never finish. */
const LOCK_EXPIRY_MS = 60 * 60_000;
const PENDING_LOCK_EXPIRY_MS = 120 * 60_000;

export interface ImportRequest {
  readonly method: { readonly name: string; readonly uri?: string } & Record<string, unknown>;
  readonly body: Record<string, unknown>;
}

export interface ImportSettings {
  readonly enabledMethods: readonly string[];
  /** Throws InvalidInputError when a web-download URI may not be fetched. */
  readonly validateUri: (uri: string) => Promise<void>;
  /** Called once a task is queued, so a runner can pick it up without waiting. */
  readonly onQueued: () => void;
}

export class ImportService {
  constructor(
    private readonly access: ImageAccess,
    private readonly tasks: TaskRepository,
    private readonly settings: ImportSettings,
    private readonly quotas: ProjectQuotas,
  ) {}

  get methods(): readonly string[] {
    return this.settings.enabledMethods;
  }

  /** Checks the body's shape, as upstream's deserializer does before anything else. */
  parseBody(body: unknown): ImportRequest {
    if (!isPlainObject(body) || !isPlainObject(body.method)) {
      throw new InvalidInputError("Import request requires a 'method' field.");
    }
    const method = body.method;
    if (!('name' in method))
      throw new InvalidInputError("Import request requires a 'name' field.");
    if (typeof method.name !== 'string' || !this.methods.includes(method.name)) {
      throw new InvalidInputError(`Unknown import method name '${String(method.name)}'.`);
    }
    for (const flag of ['all_stores_must_succeed', 'all_stores']) {
      if (flag in body && typeof body[flag] !== 'boolean') {
        throw new InvalidInputError(`'${flag}' must be boolean value only`);
      }
    }
    return { method: method as ImportRequest['method'], body };
  }

  async start(context: RequestContext, imageId: string, request: ImportRequest): Promise<string> {
    // Before the lookup, as upstream: a project already over image_size_total cannot import.
    await this.quotas.enforceLimits(context.projectId, { image_size_total: 0 });
    const { image, target } = await this.access.find(context, imageId);
    checkStatus(image, request.method.name);
    this.access.enforce('modify_image', context, target);

    if (request.body.all_stores_must_succeed === false) {
      throw new InvalidInputError('All_stores_must_succeed can only be set with enabled_backends');
    }
    const uri = request.method.uri;
    if (request.method.name === 'web-download') {
      if (typeof uri !== 'string') {
        throw new InvalidInputError(`URI for web-download does not pass filtering: ${uri}`);
      }
      await this.settings.validateUri(uri);
    }

    const task = newImportTask(context, image, request);
    await this.#lock(image, task.id);
    try {
      await this.tasks.create(task);
    } catch (error) {
      await this.access.repo.removePropertyIfEquals(image.id, IMPORT_LOCK, task.id);
      throw error;
    }
    this.settings.onQueued();
    return task.id;
  }

  async #lock(image: ImageRecord, taskId: string): Promise<void> {
    const repo = this.access.repo;
    if (await repo.setPropertyIfAbsent(image.id, IMPORT_LOCK, taskId)) return;

    const holder = (await repo.get(image.id))?.properties[IMPORT_LOCK];
    if (holder !== undefined && !(await this.#isStale(holder))) {
      throw new ConflictError('Image has active task');
    }
    if (holder !== undefined) await this.#breakLock(image.id, holder);
    if (!(await repo.setPropertyIfAbsent(image.id, IMPORT_LOCK, taskId))) {
      throw new ConflictError(
        `New operation on image '${image.id}' is not permitted as prior operation is still ` +
          'in progress',
      );
    }
  }

  async #isStale(taskId: string): Promise<boolean> {
    const task = await this.tasks.get(taskId);
    if (!task || task.status === 'success' || task.status === 'failure') return true;
    const limit = task.status === 'pending' ? PENDING_LOCK_EXPIRY_MS : LOCK_EXPIRY_MS;
    return Date.now() - Date.parse(task.updated_at) > limit;
  }

  async #breakLock(imageId: string, taskId: string): Promise<void> {
    for (const status of ['pending', 'processing'] as const) {
      await this.tasks.update(taskId, status, {
        status: 'failure',
        message: 'Expired lock preempted',
      });
    }
    await this.access.repo.removePropertyIfEquals(imageId, IMPORT_LOCK, taskId);
  }
}

function checkStatus(image: ImageRecord, method: string): void {
  if (image.status === 'active') {
    throw new ConflictError('Image with status active cannot be target for import');
  }
  if (image.status !== 'queued' && method === 'web-download') {
    throw new ConflictError(`Image needs to be in 'queued' state to use '${method}' method`);
  }
  if (image.status !== 'uploading' && method === 'glance-direct') {
    throw new ConflictError("Image needs to be staged before 'glance-direct' method can be used");
  }
  for (const field of ['container_format', 'disk_format'] as const) {
    if (!image[field]) throw new ConflictError(`'${field}' needs to be set before import`);
  }
}

function newImportTask(
  context: RequestContext,
  image: ImageRecord,
  request: ImportRequest,
): TaskRecord {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    type: 'api_image_import',
    status: 'pending',
    owner: context.projectId,
    image_id: image.id,
    request_id: context.requestId,
    user_id: context.userId,
    input: {
      image_id: image.id,
      import_req: request.body,
      backend: [null],
      // The caller's roles decide what import plugins may do (metadata injection); kept for
      // the task runner only, never shown in task views.
      [CALLER_ROLES]: [...context.roles],
    },
    result: null,
    message: '',
    expires_at: null,
    created_at: now,
    updated_at: now,
  };
}
