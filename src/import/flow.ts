/**
 * What an import task does, once a runner claimed it: put the image in `importing`, bring the
 * data into staging (web-download, glance-download, copy-image) or use what was staged
 * (glance-direct), move it into the stores through the upload pipeline, and finish `active`.
 * Any failure reverts the image to `queued` (copy-image: leaves it active) with no data,
 * staged or stored, left behind; the task then fails with the reason.
 */
import type { Logger } from 'pino';

import { GlimpseError, InvalidInputError } from '../domain/errors.js';
import { transition, type ImageRecord } from '../domain/image.js';
import type { TaskRecord } from '../domain/task.js';
import type { ImageRepository } from '../db/repository.js';
import type { ProjectQuotas } from '../quota/project-quotas.js';
import type { ImageDataService } from '../services/image-data.js';
import { IMPORT_LOCK } from '../services/import-lock.js';
import { CALLER_ROLES, REMOTE_REFUSAL } from '../services/imports.js';
import { remoteRefOf, withRemoteMetadata } from './glance-download.js';
import { removePluginLeftovers, type ImportPlugin, type PluginOutcome } from './plugins/index.js';
import type { RemoteImageRef, RemoteImageView } from './remote-glance.js';
import type { TaskHandler } from './runner.js';

const IMPORTING_TO = 'os_glance_importing_to_stores';
const FAILED_IMPORT = 'os_glance_failed_import';

export interface WebSourceOpener {
  (uri: string): Promise<{ body: AsyncIterable<Buffer>; contentLength: number | null }>;
}

/** The other region's image service glance-download reads from (see RemoteGlance). */
export interface RemoteImageSource {
  image(ref: RemoteImageRef): Promise<RemoteImageView>;
  openData(
    ref: RemoteImageRef,
  ): Promise<{ body: AsyncIterable<Buffer>; contentLength: number | null }>;
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
    private readonly quotas: ProjectQuotas,
    private readonly openWebSource: WebSourceOpener,
    private readonly plugins: ImportPlugins,
    private readonly logger: Logger,
    private readonly remote: RemoteImageSource | null = null,
    /** Name prefixes of the remote image properties glance-download copies. */
    private readonly remoteProperties: readonly string[] = [],
  ) {}

  async run(task: TaskRecord): Promise<Record<string, unknown>> {
    const method = methodOf(task);
    const plan = planOf(task, method.name);
    let image = await this.#lockedImage(task);
    const before = image;
    // The lock makes this task the image's only writer, so what the stores hold beyond the
    // record is left over from an earlier attempt of it whose process died.
    await this.data.cleanStores(image.id, { stores: this.#storeIds(plan) });
    // A refusal by the limits is no failure of the target stores.
    let refused = false;
    try {
      image = await this.#begin(image, plan);
      // As upstream: the caller's project, once the image counts as importing.
      await this.quotas.enforceImportStart(task.owner, method.name, image.size).catch((error) => {
        refused = true;
        throw error;
      });
      if (method.name === 'web-download') image = await this.#download(image, method.uri);
      if (method.name === 'glance-download') image = await this.#downloadRemote(image, task);
      if (plan.copying) await this.data.stageExisting(image);
      else image = await this.#runPlugins(image, rolesOf(task));

      image = await this.#writeToStores(image, plan, task.owner);
      await this.data.removeStaged(image.id);
      if (image.status !== 'active') throw new Error('No store accepted the image data');
      await this.images.removePropertyIfEquals(image.id, IMPORT_LOCK, task.id);
      return { image_id: image.id };
    } catch (error) {
      await this.#revert(task, image.id, plan, before, !refused);
      throw reasonOf(error);
    }
  }

  async abandon(task: TaskRecord): Promise<void> {
    if (!task.image_id) return;
    const image = await this.images.get(task.image_id);
    await this.#revert(task, task.image_id, planOf(task, methodOf(task).name), image, true);
  }

  /**
   * Writes the staged data to each target store in turn. When every store must succeed, the
   * image turns active with the last copy and any failure fails the import; otherwise it turns
   * active with the first copy, and a failing store is only recorded as failed.
   */
  async #writeToStores(
    image: ImageRecord,
    plan: ImportPlan,
    project: string | null,
  ): Promise<ImageRecord> {
    let current = image;
    for (const [index, storeId] of plan.stores.entries()) {
      const last = index === plan.stores.length - 1;
      const activate = !plan.copying && (!plan.mustSucceed || last);
      try {
        current = await this.data.importStaged(current, { project, storeId, activate });
        current = await this.#save(current, finishedStore(current, storeId, true));
      } catch (error) {
        if (plan.mustSucceed) throw error;
        this.logger.warn(
          { err: error, image_id: image.id, store: storeId },
          'import to one store failed; the others carry on. Retry with copy-image later.',
        );
        const fresh = (await this.images.get(image.id)) ?? current;
        current = await this.#save(fresh, finishedStore(fresh, storeId, false));
        const failed = storeId ?? this.data.defaultStoreId;
        await this.data.cleanStores(image.id, { image: current, stores: [failed] });
      }
    }
    return current;
  }

  async #lockedImage(task: TaskRecord): Promise<ImageRecord> {
    const image = task.image_id ? await this.images.get(task.image_id) : null;
    if (!image) throw new Error(`Image ${task.image_id ?? ''} no longer exists`);
    if (image.properties[IMPORT_LOCK] !== task.id) {
      throw new Error(`Image ${image.id} is no longer locked by this import`);
    }
    return image;
  }

  /**
   * importing (copy-image keeps active), with upstream's bookkeeping: the targets join
   * os_glance_importing_to_stores and leave os_glance_failed_import. A retried task finds
   * them there already.
   */
  async #begin(image: ImageRecord, plan: ImportPlan): Promise<ImageRecord> {
    const targets = plan.stores.filter((id): id is string => id !== null);
    const properties: Record<string, string> = {
      ...image.properties,
      [IMPORTING_TO]: joinStores([...storesIn(image, IMPORTING_TO), ...targets]),
      [FAILED_IMPORT]: joinStores(
        storesIn(image, FAILED_IMPORT).filter((id) => !targets.includes(id)),
      ),
    };
    delete properties.os_glance_stage_host;
    const keep = image.status === 'importing' || plan.copying;
    const status = keep ? {} : transition(image, 'importing');
    const next = { ...image, ...status, properties, updated_at: now() };
    return this.#save(image, next);
  }

  /**
   * glance-download: the remote image must be active; its formats and the properties named
   * by remoteProperties are copied, then its data is staged, which must be as long as the
   * remote image says.
   */
  async #downloadRemote(image: ImageRecord, task: TaskRecord): Promise<ImageRecord> {
    const refusal = task.input[REMOTE_REFUSAL];
    if (typeof refusal === 'string') throw new Error(refusal);
    if (!this.remote) throw new Error('glance-download is not enabled here');
    const ref = remoteRefOf(task);
    const remote = await this.remote.image(ref);
    const described = await this.#save(
      image,
      withRemoteMetadata(image, remote, this.remoteProperties),
    );

    const source = await this.remote.openData(ref);
    const size = await this.data.stageStream(described, source.body);
    if (size !== remote.size) {
      throw new Error(
        `Downloaded data size ${size} is different from the remote image's ${String(remote.size)}`,
      );
    }
    return this.#save(described, { ...described, size, updated_at: now() });
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

  /**
   * Undoes an import, best effort, never throwing: its stores marked failed (or, for an
   * import the limits refused, only no longer importing, as upstream), the image back to
   * queued (copy-image leaves it active) without the copies this task wrote, those copies and
   * the staged data deleted, and the lock released. Each step runs even if one before failed,
   * so the lock is always released.
   */
  async #revert(
    task: TaskRecord,
    imageId: string,
    plan: ImportPlan,
    before: ImageRecord | null,
    storesFailed: boolean,
  ): Promise<void> {
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['restore the image record', () => this.#revertImage(imageId, plan, before, storesFailed)],
      ['remove plugin files', () => removePluginLeftovers(this.plugins.stagingPath(imageId))],
      // Against the record as reverted: copies it no longer has and staged data are removed.
      ['clean the stores', () => this.data.cleanStores(imageId, { stores: this.#storeIds(plan) })],
      [
        'release the lock',
        () => this.images.removePropertyIfEquals(imageId, IMPORT_LOCK, task.id),
      ],
    ];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (error) {
        this.logger.error(
          { err: error, image_id: imageId, task_id: task.id },
          `could not ${what} after a failed import; check the image and its stores`,
        );
      }
    }
  }

  /**
   * The image as before the import: copies this task wrote dropped, formats and properties a
   * glance-download copied restored, and back to queued (unless copying).
   */
  async #revertImage(
    imageId: string,
    plan: ImportPlan,
    before: ImageRecord | null,
    storesFailed: boolean,
  ) {
    const image = await this.images.get(imageId);
    if (!image) return;
    const earlier = new Set(before?.locations.map((location) => location.url) ?? []);
    let next: ImageRecord = {
      ...leftStores(image, plan.stores, storesFailed),
      locations: image.locations.filter((location) => earlier.has(location.url)),
      updated_at: now(),
    };
    if (plan.remote && before) next = restoreDescription(next, before);
    const reverting = image.status === 'importing' || image.status === 'uploading';
    if (!plan.copying && reverting) {
      next = { ...next, ...transition(image, 'queued'), ...NO_HASHES };
    }
    await this.images.save(image, next);
  }

  /** The ids of the stores the import writes to (the default store stands for null). */
  #storeIds(plan: ImportPlan): string[] {
    return plan.stores.map((id) => id ?? this.data.defaultStoreId);
  }
}

const NO_HASHES = {
  checksum: null,
  os_hash_algo: null,
  os_hash_value: null,
  data_crc32: null,
} as const;

/** The formats and properties of `before`, keeping the bookkeeping of `image`. */
function restoreDescription(image: ImageRecord, before: ImageRecord): ImageRecord {
  const bookkeeping = Object.entries(image.properties).filter(([name]) =>
    name.startsWith('os_glance'),
  );
  return {
    ...image,
    disk_format: before.disk_format,
    container_format: before.container_format,
    properties: { ...before.properties, ...Object.fromEntries(bookkeeping) },
  };
}

/** What an import task was asked to do, from its input. */
interface ImportPlan {
  /** Target store ids; [null] outside multi-store. */
  readonly stores: readonly (string | null)[];
  readonly mustSucceed: boolean;
  readonly copying: boolean;
  /** glance-download, which describes the image from the remote one. */
  readonly remote: boolean;
}

function planOf(task: TaskRecord, method: string): ImportPlan {
  const backend = task.input.backend;
  const stores = Array.isArray(backend)
    ? backend.filter((id): id is string | null => id === null || typeof id === 'string')
    : [null];
  const request = task.input.import_req as { all_stores_must_succeed?: unknown } | undefined;
  return {
    stores: stores.length > 0 ? stores : [null],
    mustSucceed: request?.all_stores_must_succeed !== false,
    copying: method === 'copy-image',
    remote: method === 'glance-download',
  };
}

/** The store ids in a comma-list bookkeeping property. */
function storesIn(image: ImageRecord, property: string): string[] {
  return (image.properties[property] ?? '')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
}

function joinStores(ids: string[]): string {
  return [...new Set(ids)].sort().join(',');
}

/** The store leaves the importing list, and joins the failed list when it failed. */
function finishedStore(image: ImageRecord, storeId: string | null, ok: boolean): ImageRecord {
  if (storeId === null) return image;
  const importing = storesIn(image, IMPORTING_TO).filter((id) => id !== storeId);
  const failed = storesIn(image, FAILED_IMPORT);
  if (!ok) failed.push(storeId);
  const properties = {
    ...image.properties,
    [IMPORTING_TO]: joinStores(importing),
    [FAILED_IMPORT]: joinStores(failed),
  };
  return { ...image, properties, updated_at: now() };
}

/** Every target still in the importing list leaves it, to the failed list if `failed`. */
function leftStores(
  image: ImageRecord,
  targets: readonly (string | null)[],
  failed: boolean,
): ImageRecord {
  let next = image;
  for (const id of targets) {
    if (id !== null && storesIn(next, IMPORTING_TO).includes(id)) {
      next = finishedStore(next, id, !failed);
    }
  }
  return next;
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
