/**
 * Image data use cases: upload, download and staging. Every byte goes through the ingest
 * pipeline; the image only becomes `active` once its data is committed to the store, and any
 * failure puts it back to `queued` with nothing left in the store.
 */
import type { Readable } from 'node:stream';

import type { RequestContext } from '../domain/context.js';
import {
  ConflictError,
  ForbiddenError,
  GlimpseError,
  GoneError,
  InvalidInputError,
  QuotaExceededError,
  UnavailableError,
  UnsupportedMediaTypeError,
} from '../domain/errors.js';
import { transition, type ImageRecord, type ImageStatus } from '../domain/image.js';
import type { DataWriteKind, DataWriteRegistry } from '../db/repository.js';
import { ingest, type IngestOptions, type IngestResult } from '../pipeline/ingest.js';
import { mebibytes } from '../quota/limits.js';
import type { ProjectQuotas } from '../quota/project-quotas.js';
import { storageQuotaExceeded } from '../quota/storage.js';
import type { StoreRegistry } from '../stores/registry.js';
import type { CleanupScope, StoreCleanup } from './store-cleanup.js';
import {
  StoreNotFoundError,
  StoreUnavailableError,
  type ByteRange,
  type ImageStore,
  type StoreWriter,
} from '../stores/store.js';
import type { ImageAccess } from './image-access.js';
import type { ImageDataRemover } from './images.js';

export interface DataSettings {
  readonly sizeCap: number;
  readonly hashingAlgorithm: string;
  /** Identity of this process in the write registry. */
  readonly workerId: string;
}

export interface UploadRequest {
  readonly body: AsyncIterable<Buffer>;
  readonly declaredSize: number | null;
  /** The store the client asked for (X-Image-Meta-Store); null: the default store. */
  readonly storeId: string | null;
}

export interface ImportWrite {
  /** The project of the caller who asked for the import, whose quotas the data counts in. */
  readonly project: string | null;
  /** Target store id; null: the default store. */
  readonly storeId: string | null;
  /** Whether the image turns active with this copy (else it keeps its status). */
  readonly activate: boolean;
}

/** Where a write goes, and the size its data was declared to have (null: unknown). */
interface WriteTarget {
  readonly store: ImageStore;
  readonly expectedSize: number | null;
}

export interface Download {
  readonly image: ImageRecord;
  /** Opens the data, or part of it; null when the image has no data (answered with 204). */
  readonly open: ((range?: ByteRange) => Promise<Readable>) | null;
}

export class ImageDataService implements ImageDataRemover {
  readonly #access: ImageAccess;
  readonly #stores: StoreRegistry;
  readonly #writes: DataWriteRegistry;
  readonly #settings: DataSettings;
  readonly #quotas: ProjectQuotas;
  readonly #cleanup: StoreCleanup;

  constructor(
    access: ImageAccess,
    stores: StoreRegistry,
    writes: DataWriteRegistry,
    settings: DataSettings,
    quotas: ProjectQuotas,
    cleanup: StoreCleanup,
  ) {
    this.#access = access;
    this.#stores = stores;
    this.#writes = writes;
    this.#cleanup = cleanup;
    this.#settings = settings;
    this.#quotas = quotas;
  }

  get defaultStoreId(): string {
    return this.#stores.defaultStore.id;
  }

  /**
   * The store new data goes to: the one named, or the default. Outside multi-store a name is
   * ignored, as upstream ignores the header there.
   */
  targetStore(storeId: string | null): ImageStore {
    if (!this.#stores.multiStore || storeId === null) return this.#stores.defaultStore;
    const store = this.#stores.byId(storeId);
    if (!store) {
      throw new InvalidInputError(`Unknown scheme '${storeId}' found in URI`);
    }
    if (store.readOnly) {
      throw new GoneError('Error in store configuration. Adding images to store is disabled.');
    }
    return store;
  }

  async upload(context: RequestContext, id: string, request: UploadRequest): Promise<void> {
    const project = context.projectId;
    const declared = { image_size_total: mebibytes(request.declaredSize) };
    await this.#quotas.enforceLimits(project, declared);
    const store = this.targetStore(request.storeId);
    const { image, target } = await this.#access.find(context, id);
    this.#access.enforce('upload_image', context, target);

    const saving = await this.#begin(project, image, 'saving', 'upload');
    const destination = { store, expectedSize: request.declaredSize };
    await this.#write(project, saving, 'upload', destination, async (writer) => {
      const room = await this.#quotas.storageRoom(project, request.declaredSize);
      const result = await ingestWithin(room, request.body, writer, {
        sizeCap: this.#settings.sizeCap,
        declaredSize: request.declaredSize,
        hashAlgo: image.os_hash_algo ?? this.#settings.hashingAlgorithm,
        inspectAs: image.container_format === 'bare' ? image.disk_format : null,
      });
      checkVerdict(result);
      const url = await writer.commit();
      return activated(saving, result, url, store.id);
    });
  }

  async stage(context: RequestContext, id: string, request: UploadRequest): Promise<void> {
    const project = context.projectId;
    const declared = { image_stage_total: mebibytes(request.declaredSize) };
    await this.#quotas.enforceLimits(project, declared);
    // Staged data always waits in the staging store, and the import chooses the stores: an
    // X-Image-Meta-Store header on stage is ignored, as upstream ignores it.
    const { image, target } = await this.#access.find(context, id);
    this.#access.enforce('modify_image', context, target);

    const uploading = await this.#begin(project, image, 'uploading', 'stage');
    const destination = { store: this.#stores.staging, expectedSize: request.declaredSize };
    await this.#write(project, uploading, 'stage', destination, async (writer) => {
      const result = await ingest(request.body, writer, {
        sizeCap: this.#settings.sizeCap,
        declaredSize: request.declaredSize,
        hashAlgo: null,
        inspectAs: null,
      });
      await writer.commit();
      return { ...uploading, size: result.size, updated_at: now() };
    });
  }

  /**
   * Import step: writes a stream into the staging store for an image being imported (no
   * status change), bounded by image_size_cap. Returns the staged byte count. The import
   * checked the staging limits when it started.
   */
  async stageStream(image: ImageRecord, body: AsyncIterable<Buffer>): Promise<number> {
    const writer = await this.#stores.staging.createWriter(image.id);
    try {
      const result = await ingest(body, writer, {
        sizeCap: this.#settings.sizeCap,
        declaredSize: null,
        hashAlgo: null,
        inspectAs: null,
      });
      await writer.commit();
      return result.size;
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  /**
   * Import step of copy-image: brings the data of an active image from the first of its
   * stores that answers into staging. Returns the staged byte count.
   */
  async stageExisting(image: ImageRecord): Promise<number> {
    const locations = image.locations.filter((location) => location.status === 'active');
    const source = await this.#openFirst(image, this.#stores.readingOrder(locations));
    return this.stageStream(image, source);
  }

  /**
   * Import step: copies staged data into a store through the same pipeline as an upload (size
   * cap, hashes, format checks) and returns the image with the new location (and activated
   * when asked), as saved. The staged copy stays until the caller removes it.
   */
  async importStaged(importing: ImageRecord, target: ImportWrite): Promise<ImageRecord> {
    const project = target.project;
    const size = importing.size;
    await this.#quotas.enforceLimits(project, { image_size_total: mebibytes(size) });
    const room = await this.#quotas.storageRoom(project, size);

    const staging = this.#stores.staging;
    const store = this.targetStore(target.storeId);
    const source = await staging.read(staging.locationOf(importing.id));
    const writer = await store.createWriter(importing.id, size).catch((error: unknown) => {
      source.destroy();
      throw unavailable(store, error);
    });
    let url: string | null = null;
    try {
      const result = await ingestWithin(room, source, writer, {
        sizeCap: this.#settings.sizeCap,
        declaredSize: size,
        hashAlgo: importing.os_hash_algo ?? this.#settings.hashingAlgorithm,
        inspectAs: importing.container_format === 'bare' ? importing.disk_format : null,
      });
      checkVerdict(result);
      checkSameData(importing, result);
      url = await writer.commit();
      const stored = withCopy(importing, result, url, store.id, target.activate);
      if (!(await this.#quotas.commitStored(project, importing, stored))) {
        throw new GoneError(`Image ${importing.id} was deleted or changed during the import.`);
      }
      return stored;
    } catch (error) {
      source.destroy();
      await writer.abort();
      // What a store that is down keeps is the import's cleanup to remove (cleanStores).
      if (url !== null) await store.delete(url).catch(() => undefined);
      throw error instanceof StoreUnavailableError ? unavailable(store, error) : error;
    }
  }

  /**
   * Reads a copy of an image's data end to end and returns its size and hashes (MD5 and
   * `hashAlgo`), without storing anything: the check of a location a client added.
   */
  async hashCopy(location: ImageRecord['locations'][number], hashAlgo: string) {
    const store = this.#stores.forLocation(location);
    const source = await store.read(location.url).catch((error: unknown) => {
      throw unavailable(store, error);
    });
    const result = await ingest(source, DISCARD, {
      sizeCap: this.#settings.sizeCap,
      declaredSize: null,
      hashAlgo,
      inspectAs: null,
    }).finally(() => source.destroy());
    const { size, checksum, hashValue, crc32 } = result;
    return { size, checksum, hashValue, crc32 };
  }

  /**
   * Removes what interrupted writes of the image left in the stores, and data its record
   * does not point at; see StoreCleanup. Only the image's writer (the holder of its import
   * lock) may call it.
   */
  async cleanStores(imageId: string, scope?: CleanupScope): Promise<void> {
    await this.#cleanup.clean(imageId, scope);
  }

  async removeStaged(imageId: string): Promise<void> {
    await this.#stores.staging.delete(this.#stores.staging.locationOf(imageId));
  }

  /**
   * Opens an image's data for download. `prefer` lists store ids to read first (upstream's
   * `?prefer=`); the other copies follow by store weight.
   */
  async download(context: RequestContext, id: string, prefer: string[] = []): Promise<Download> {
    const { image, target } = await this.#access.find(context, id);
    if (image.status === 'deactivated' && !context.isAdmin) {
      throw new ForbiddenError(
        'The requested image has been deactivated. Image data download is forbidden.',
      );
    }
    this.#access.enforce('download_image', context, target);
    if (prefer.length > 0) {
      this.#access.enforce('download_from_store', context, target);
      this.#checkPreferred(prefer);
    }

    const live = image.locations.filter((location) => location.status === 'active');
    if (live.length === 0) return { image, open: null };
    const locations = this.#stores.readingOrder(live, prefer);
    return { image, open: (range) => this.#openFirst(image, locations, range) };
  }

  #checkPreferred(prefer: string[]): void {
    if (!this.#stores.multiStore) {
      throw new InvalidInputError(
        'Store selection for download is not available when multiple backends are not ' +
          'enabled.',
      );
    }
    const unknown = prefer.find((id) => !this.#stores.byId(id));
    if (unknown !== undefined)
      throw new InvalidInputError(`Store '${unknown}' is not configured.`);
  }

  /** Tries each copy in order, falling through to the next when one is missing or down. */
  async #openFirst(
    image: ImageRecord,
    locations: ImageRecord['locations'],
    range?: ByteRange,
  ): Promise<Readable> {
    let lastError: unknown;
    for (const location of locations) {
      try {
        return await this.#stores.forLocation(location).read(location.url, range);
      } catch (error) {
        lastError = error;
      }
    }
    if (lastError instanceof StoreNotFoundError) {
      throw new UnavailableError(`The data of image ${image.id} is missing from its store.`, {
        cause: lastError,
      });
    }
    const names = locations.map((location) => this.#stores.storeIdOf(location) ?? '?');
    throw new UnavailableError(
      `The store holding image ${image.id} (${names.join(', ')}) is unavailable.`,
      { cause: lastError },
    );
  }

  /** Deletes the data of a deleted image; a store that is down deletes its copy later. */
  async removeData(image: ImageRecord): Promise<void> {
    await this.#cleanup.removeCopies(image.id, image.locations);
    await this.#stores.staging.delete(this.#stores.staging.locationOf(image.id));
  }

  /** Deletes the data of copies removed from an image (later, for a store that is down). */
  async removeCopy(imageId: string, location: ImageRecord['locations'][number]): Promise<void> {
    await this.#cleanup.removeCopies(imageId, [location]);
  }

  /**
   * Moves the image out of queued, claiming it so that a racing write gets 409; it then counts
   * against the project's image_count_uploading.
   */
  async #begin(
    project: string | null,
    image: ImageRecord,
    to: ImageStatus,
    kind: DataWriteKind,
  ): Promise<ImageRecord> {
    if (image.status !== 'queued') {
      throw new ConflictError(
        `Image status transition from ${image.status} to ${to} is not allowed`,
      );
    }
    const next = { ...image, ...transition(image, to), updated_at: now() };
    const write = { imageId: image.id, kind, workerId: this.#settings.workerId };
    const pending = await this.#writes.get(image.id);
    if (!(await this.#quotas.claim(project, image, next, write))) {
      throw new ConflictError(`Image status transition from queued to ${to} is not allowed`);
    }
    // The image is ours now: a cleanup a store's outage left pending is done before the new
    // write adds data it must not touch (it is forgotten if the store is still down).
    if (pending?.kind === 'cleanup' && !(await this.#cleanup.clean(image.id, { image: next }))) {
      await this.#writes.begin(write);
    }
    return next;
  }

  /**
   * Runs one write from `saving`/`uploading` to its final state. On any failure the data is
   * discarded and the image goes back to queued; if the image was deleted meanwhile, 410.
   * The final state is only recorded if the data, at its real size, fits the quotas.
   */
  async #write(
    project: string | null,
    image: ImageRecord,
    kind: DataWriteKind,
    destination: WriteTarget,
    body: (writer: StoreWriter) => Promise<ImageRecord>,
  ): Promise<void> {
    const { store, expectedSize } = destination;
    let writer: StoreWriter | null = null;
    let clean = true;
    try {
      writer = await store.createWriter(image.id, expectedSize).catch((error: unknown) => {
        throw unavailable(store, error);
      });
      const finished = await body(writer).catch((error: unknown) => {
        throw error instanceof StoreUnavailableError ? unavailable(store, error) : error;
      });
      const saved = await this.#record(project, kind, image, finished).catch(
        async (error: unknown) => {
          await this.#discardCommitted(finished, kind, store);
          throw error;
        },
      );
      if (!saved) {
        await this.#discardCommitted(finished, kind, store);
        throw new GoneError(`Image ${image.id} was deleted during the ${kind}.`);
      }
    } catch (error) {
      await writer?.abort();
      // While the image is still being written, no other write can start: clean up first.
      clean = await this.#cleanup.clean(image.id, {
        image: queuedAgain(image),
        stores: [store.id],
      });
      await this.#requeue(image);
      throw error;
    } finally {
      // A store that could not be cleaned keeps the record, as a cleanup to retry.
      if (clean) await this.#writes.end(image.id);
    }
  }

  #record(project: string | null, kind: DataWriteKind, image: ImageRecord, next: ImageRecord) {
    return kind === 'upload'
      ? this.#quotas.commitStored(project, image, next)
      : this.#quotas.commitStaged(project, image, next);
  }

  async #discardCommitted(image: ImageRecord, kind: DataWriteKind, store: ImageStore) {
    if (kind === 'stage') {
      await store.delete(store.locationOf(image.id));
      return;
    }
    for (const location of image.locations) await store.delete(location.url);
  }

  /** Back to queued, unless something else (a delete) changed the image meanwhile. */
  async #requeue(image: ImageRecord): Promise<void> {
    await this.#access.repo.save(image, queuedAgain(image));
  }
}

function queuedAgain(image: ImageRecord): ImageRecord {
  return { ...image, ...transition(image, 'queued'), updated_at: now() };
}

/** A writer that keeps nothing, for reading data only to measure and hash it. */
const DISCARD: StoreWriter = {
  write: async () => undefined,
  commit: async () => '',
  abort: async () => undefined,
};

/**
 * `ingest`, with the write also stopped once it passes `room`, the bytes the storage quota
 * leaves (null: no quota). Whichever of the two caps is lower is the one that applies.
 */
async function ingestWithin(
  room: number | null,
  source: AsyncIterable<Buffer>,
  writer: StoreWriter,
  options: IngestOptions,
): Promise<IngestResult> {
  const quotaFirst = room !== null && room < options.sizeCap;
  try {
    return await ingest(source, writer, quotaFirst ? { ...options, sizeCap: room } : options);
  } catch (error) {
    if (quotaFirst && error instanceof QuotaExceededError) throw storageQuotaExceeded(null, room);
    throw error;
  }
}

function checkVerdict(result: IngestResult): void {
  const verdict = result.verdict;
  if (verdict && !verdict.ok) {
    throw new UnsupportedMediaTypeError(
      'The request media type application/octet-stream is not supported by this server.',
      { detail: verdict.message },
    );
  }
}

/**
 * A further copy of an image must hold the same bytes as the first: a staged file changed
 * between two store writes would otherwise leave copies that differ.
 */
function checkSameData(image: ImageRecord, result: IngestResult): void {
  if (image.checksum === null || image.locations.length === 0) return;
  if (image.checksum !== result.checksum || image.size !== result.size) {
    throw new ConflictError(
      `The data written for image ${image.id} differs from its existing copies.`,
    );
  }
}

function activated(
  image: ImageRecord,
  result: IngestResult,
  url: string,
  storeId: string,
): ImageRecord {
  return withCopy(image, result, url, storeId, true);
}

/** The image with one more copy of its data, and its computed metadata. */
function withCopy(
  image: ImageRecord,
  result: IngestResult,
  url: string,
  storeId: string,
  activate: boolean,
): ImageRecord {
  const verdict = result.verdict?.ok ? result.verdict : null;
  return {
    ...image,
    ...(activate && image.status !== 'active' ? transition(image, 'active') : {}),
    size: result.size,
    virtual_size: verdict?.virtualSize ?? image.virtual_size,
    checksum: result.checksum,
    os_hash_algo: result.hashAlgo,
    os_hash_value: result.hashValue,
    data_crc32: result.crc32,
    locations: [...image.locations, { url, metadata: { store: storeId }, status: 'active' }],
    updated_at: now(),
  };
}

/** The client learns which store failed; what failed (hosts, paths) goes to the log only. */
function unavailable(store: ImageStore, error: unknown): GlimpseError {
  if (error instanceof GlimpseError) return error;
  return new UnavailableError(`Image store ${store.id} is unavailable. Try again later.`, {
    cause: error,
  });
}

function now(): string {
  return new Date().toISOString();
}
