/**
 * The import lock: the `os_glance_import_task` property of an image names the one task
 * (import or location import) allowed to change its data. As upstream, an operation first
 * checks the lock (enforce), then plans its work, and only then takes the lock, which is set
 * only if absent so that two operations cannot both start. A lock whose task is gone, over,
 * or silent for too long is stale and broken.
 */
import { ConflictError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import type { TaskRecord } from '../domain/task.js';
import type { ImageRepository, TaskRepository } from '../db/repository.js';

export const IMPORT_LOCK = 'os_glance_import_task';

/** The store lists where an import records its progress; see ImportFlow. */
const PROGRESS_PROPERTIES = ['os_glance_importing_to_stores', 'os_glance_failed_import'];

/** A lock older than this is taken to belong to a task that will never finish. */
const LOCK_EXPIRY_MS = 60 * 60_000;
const PENDING_LOCK_EXPIRY_MS = 120 * 60_000;

export class ImportLock {
  constructor(
    private readonly images: ImageRepository,
    private readonly tasks: TaskRepository,
    /** Called once a task is queued, so a runner can pick it up without waiting. */
    private readonly onQueued: () => void,
  ) {}

  /**
   * 409 while a live operation holds the image's lock. A stale lock is broken here, and its
   * task returned when it still exists, so that queue() can clean up what it left.
   */
  async enforce(image: ImageRecord): Promise<TaskRecord | null> {
    const holderId = image.properties[IMPORT_LOCK];
    if (holderId === undefined) return null;
    const holder = await this.tasks.get(holderId);
    if (holder && !isStale(holder)) throw new ConflictError('Image has active task');
    await this.#break(image.id, holderId);
    return holder;
  }

  /**
   * Takes the image's lock for `task` and queues the task; 409 when another operation took
   * the lock since enforce(). With the lock held, the progress a broken lock's task left on
   * the image is removed. The lock is released again if the task cannot be stored.
   */
  async queue(imageId: string, task: TaskRecord, staleHolder: TaskRecord | null): Promise<void> {
    if (!(await this.images.setPropertyIfAbsent(imageId, IMPORT_LOCK, task.id))) {
      throw new ConflictError(
        `New operation on image '${imageId}' is not permitted as prior operation is still ` +
          'in progress',
      );
    }
    try {
      if (staleHolder) await this.#removeProgressOf(imageId, staleHolder);
      await this.tasks.create(task);
    } catch (error) {
      await this.images.removePropertyIfEquals(imageId, IMPORT_LOCK, task.id);
      throw error;
    }
    this.onQueued();
  }

  async #break(imageId: string, taskId: string): Promise<void> {
    for (const status of ['pending', 'processing'] as const) {
      await this.tasks.update(taskId, status, {
        status: 'failure',
        message: 'Expired lock preempted',
      });
    }
    await this.images.removePropertyIfEquals(imageId, IMPORT_LOCK, taskId);
  }

  /** The stale task's target stores leave the image's importing and failed lists. */
  async #removeProgressOf(imageId: string, stale: TaskRecord): Promise<void> {
    const image = await this.images.get(imageId);
    if (!image) return;
    const properties = withoutProgressOn(image.properties, targetStores(stale));
    if (properties === image.properties) return;
    await this.images.save(image, { ...image, properties, updated_at: new Date().toISOString() });
  }
}

function isStale(task: TaskRecord): boolean {
  if (task.status === 'success' || task.status === 'failure') return true;
  const limit = task.status === 'pending' ? PENDING_LOCK_EXPIRY_MS : LOCK_EXPIRY_MS;
  return Date.now() - Date.parse(task.updated_at) > limit;
}

/** The stores an import task writes to, from its input (`backend`, as upstream keeps it). */
function targetStores(task: TaskRecord): string[] {
  const backend = task.input.backend;
  if (!Array.isArray(backend)) return [];
  return backend.filter((id): id is string => typeof id === 'string');
}

/** The properties without `stores` in the progress lists; the same object if none was there. */
function withoutProgressOn(
  properties: Readonly<Record<string, string>>,
  stores: readonly string[],
): Readonly<Record<string, string>> {
  let result = properties;
  for (const name of PROGRESS_PROPERTIES) {
    const listed = properties[name]?.split(',') ?? [];
    const kept = listed.filter((id) => !stores.includes(id.trim()));
    if (kept.length < listed.length) result = { ...result, [name]: kept.join(',') };
  }
  return result;
}
