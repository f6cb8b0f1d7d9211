/**
 * What an import task does, once a runner claimed it: put the image in `importing`, bring the
 * data into staging (web-download) or use what was staged (glance-direct), move it into the
 * store through the upload pipeline, and finish `active`. Any failure reverts the image to
 * `queued` with no data, staged or stored, left behind; the task then fails with the reason.
 */
import type { Logger } from 'pino';

import { GlimpseError, InvalidInputError } from '../domain/errors.js';
import { transition, type ImageRecord } from '../domain/image.js';
import type { TaskRecord } from '../domain/task.js';
import type { ImageRepository } from '../db/repository.js';
import type { ImageDataService } from '../services/image-data.js';
import { CALLER_ROLES, IMPORT_LOCK } from '../services/imports.js';
import { removePluginLeftovers, type ImportPlugin, type PluginOutcome } from './plugins/index.js';
import type { TaskHandler } from './runner.js';

const IMPORTING_TO = 'os_glance_importing_to_stores';
const FAILED_IMPORT = 'os_glance_failed_import';

export interface WebSourceOpener {
  (uri: string): Promise<{ body: AsyncIterable<Buffer>; contentLength: number | null }>;
}

export interface ImportPlugins {
  readonly plugins: readonly ImportPlugin[];
  /** Local path of an image's staged data, which plugins rewrite in place. */
  readonly stagingPath: (imageId: string) => string;
  readonly sizeCap: number;
}

export class ImportFlow implements TaskHandler {
  constructor(
    private readonly images: ImageRepository,
    private readonly data: ImageDataService,
    private readonly openWebSource: WebSourceOpener,
    private readonly plugins: ImportPlugins,
    private readonly logger: Logger,
  ) {}

  async run(task: TaskRecord): Promise<Record<string, unknown>> {
    const method = methodOf(task);
    let image = await this.#lockedImage(task);
    // The lock makes this task the image's only writer, so partial files are leftovers of an
    // earlier attempt of it whose process died.
    await this.data.discardUncommitted(image.id);
    try {
      image = await this.#begin(image);
      if (method.name === 'web-download') image = await this.#download(image, method.uri);
      image = await this.#runPlugins(image, rolesOf(task));

      const active = await this.data.importStaged(image);
      await this.data.removeStaged(image.id);
      await this.images.removePropertyIfEquals(image.id, IMPORT_LOCK, task.id);
      return { image_id: active.id };
    } catch (error) {
      await this.#revert(task, image.id);
      throw reasonOf(error);
    }
  }

  async abandon(task: TaskRecord): Promise<void> {
    if (task.image_id) await this.#revert(task, task.image_id);
  }

  async #lockedImage(task: TaskRecord): Promise<ImageRecord> {
    const image = task.image_id ? await this.images.get(task.image_id) : null;
    if (!image) throw new Error(`Image ${task.image_id ?? ''} no longer exists`);
    if (image.properties[IMPORT_LOCK] !== task.id) {
      throw new Error(`Image ${image.id} is no longer locked by this import`);
    }
    return image;
  }

  /** importing, with upstream's bookkeeping properties (a retried task finds it there). */
  async #begin(image: ImageRecord): Promise<ImageRecord> {
    const properties: Record<string, string> = {
      ...image.properties,
      [IMPORTING_TO]: '',
      [FAILED_IMPORT]: '',
    };
    delete properties.os_glance_stage_host;
    const status = image.status === 'importing' ? {} : transition(image, 'importing');
    const next = { ...image, ...status, properties, updated_at: now() };
    return this.#save(image, next);
  }

  async #download(image: ImageRecord, uri: unknown): Promise<ImageRecord> {
    if (typeof uri !== 'string') throw new InvalidInputError('web-download needs a uri');
    const source = await this.openWebSource(uri);
    const size = await this.data.stageStream(image, source.body);
    return this.#save(image, { ...image, size, updated_at: now() });
  }

  /** Each plugin works on the staged file; what it learns is written to the image. */
  async #runPlugins(image: ImageRecord, roles: string[]): Promise<ImageRecord> {
    const path = this.plugins.stagingPath(image.id);
    let current = image;
    for (const plugin of this.plugins.plugins) {
      const outcome = await plugin.run(
        { path, diskFormat: current.disk_format, containerFormat: current.container_format },
        { roles, sizeCap: this.plugins.sizeCap },
      );
      current = await this.#save(current, applyOutcome(current, outcome));
    }
    return current;
  }

  async #save(previous: ImageRecord, next: ImageRecord): Promise<ImageRecord> {
    if (!(await this.images.save(previous, next))) {
      throw new Error(`Image ${previous.id} was changed or deleted during the import`);
    }
    return next;
  }

  /** Back to queued, staged data removed, lock released; best effort, never throws. */
  async #revert(task: TaskRecord, imageId: string): Promise<void> {
    try {
      await this.data.discardUncommitted(imageId);
      await removePluginLeftovers(this.plugins.stagingPath(imageId));
      await this.data.removeStaged(imageId);
      const image = await this.images.get(imageId);
      if (image && (image.status === 'importing' || image.status === 'uploading')) {
        const reverted = { ...image, ...transition(image, 'queued'), updated_at: now() };
        await this.images.save(image, reverted);
      }
      await this.images.removePropertyIfEquals(imageId, IMPORT_LOCK, task.id);
    } catch (error) {
      this.logger.error(
        { err: error, image_id: imageId, task_id: task.id },
        'could not revert a failed import; check the image and its staging data',
      );
    }
  }
}

/**
 * The task message is what the user reads: a refused disk image carries its reason in the
 * error's detail, under a generic HTTP explanation.
 */
function reasonOf(error: unknown): unknown {
  if (error instanceof GlimpseError && error.detail)
    return new Error(error.detail, { cause: error });
  return error;
}

function applyOutcome(image: ImageRecord, outcome: PluginOutcome): ImageRecord {
  return {
    ...image,
    disk_format: outcome.diskFormat ?? image.disk_format,
    container_format: outcome.containerFormat ?? image.container_format,
    size: outcome.size ?? image.size,
    virtual_size: outcome.virtualSize === undefined ? image.virtual_size : outcome.virtualSize,
    properties: { ...image.properties, ...(outcome.properties ?? {}) },
    updated_at: now(),
  };
}

function rolesOf(task: TaskRecord): string[] {
  const roles = task.input[CALLER_ROLES];
  return Array.isArray(roles)
    ? roles.filter((role): role is string => typeof role === 'string')
    : [];
}

function methodOf(task: TaskRecord): { name: string; uri?: unknown } {
  const request = task.input.import_req as { method?: { name?: unknown; uri?: unknown } };
  const name = request?.method?.name;
  if (typeof name !== 'string') throw new Error('the task has no import method');
  return { name, uri: request.method?.uri };
}

function now(): string {
  return new Date().toISOString();
}
