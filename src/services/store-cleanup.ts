/**
 * Keeps the stores in line with the image records after a write failed, was abandoned or was
 * undone: nothing a store holds for an image may outlive the record that would point at it.
 *
 * For an image, in every writable store and in staging, cleaning removes
 * - what uncommitted writes left (partial files, segments, multipart uploads);
 * - committed data the record no longer points at: the image's object in a store where it
 *   has no location (a copy written but never recorded, or whose record was rolled back), and
 *   staged data of an image that is not waiting for its import.
 *
 * A store that is down cannot be cleaned now. The image then gets a cleanup record in the
 * write registry, which WriteRecovery retries until every store has answered.
 *
 * Only the image's one writer may clean it (the process whose write failed, while the image
 * is still `saving` or `uploading`, or the holder of its import lock): cleaning removes
 * uncommitted data, and a write in progress holds such data. retry() therefore skips images
 * that are being written or imported. It can still meet an upload that starts while it runs;
 * that upload then fails with 503 and can be sent again (closing the gap would need a lock
 * per image around every write).
 */
import type { Logger } from 'pino';

import type { ImageRecord } from '../domain/image.js';
import type { DataWriteRegistry, ImageRepository } from '../db/repository.js';
import type { StoreFailure, StoreRegistry } from '../stores/registry.js';
import type { ImageStore } from '../stores/store.js';
import { IMPORT_LOCK } from './import-lock.js';

/** What to clean against, and where. */
export interface CleanupScope {
  /** The record to clean against, when the caller is about to save it (else it is read). */
  readonly image?: ImageRecord | null;
  /** Only these stores (and staging); all of them when absent. */
  readonly stores?: readonly string[];
}

/** Statuses in which an image's staged data is still wanted. */
const STAGED_STATUSES = new Set(['uploading', 'importing']);
/** Statuses in which a write of the image may be in progress. */
const BEING_WRITTEN = new Set(['saving', 'uploading', 'importing']);

export class StoreCleanup {
  constructor(
    private readonly stores: StoreRegistry,
    private readonly images: ImageRepository,
    private readonly writes: DataWriteRegistry,
    private readonly logger: Logger,
  ) {}

  /**
   * Cleans the image now; where a store is down, records the cleanup for later. Returns true
   * when every store is clean. Never throws for a store's failure.
   */
  async clean(imageId: string, scope: CleanupScope = {}): Promise<boolean> {
    const failures = await this.#cleanAll(imageId, scope);
    if (failures.length === 0) return true;

    await this.writes.leaveForCleanup(imageId);
    this.logger.warn(
      { image_id: imageId, stores: failures.map((f) => f.storeId), err: failures[0]?.error },
      'could not remove what an interrupted write of the image left in a store; it is ' +
        'removed once the store answers again',
    );
    return false;
  }

  /**
   * Deletes copies of an image's data (the image was deleted, or the copies were removed from
   * it). A copy a store cannot delete now is recorded for cleanup instead of failing.
   */
  async removeCopies(imageId: string, copies: ImageRecord['locations']): Promise<void> {
    const failures: StoreFailure[] = [];
    for (const copy of copies) {
      const storeId = this.stores.storeIdOf(copy);
      // A copy in a store no longer configured is out of reach; it is not ours to delete.
      if (storeId === null) continue;
      try {
        await this.stores.forLocation(copy).delete(copy.url);
      } catch (error) {
        failures.push({ storeId, error });
      }
    }
    if (failures.length > 0) {
      await this.writes.leaveForCleanup(imageId);
      this.logger.warn(
        { image_id: imageId, stores: failures.map((f) => f.storeId), err: failures[0]?.error },
        'could not delete image data from a store; it is deleted once the store answers again',
      );
    }
  }

  /**
   * Retries a recorded cleanup, and drops the record once every store is clean. An image
   * whose import lock is held is skipped: the import is its writer now, and cleans up itself.
   */
  async retry(imageId: string): Promise<boolean> {
    const image = await this.images.get(imageId);
    if (image && (BEING_WRITTEN.has(image.status) || IMPORT_LOCK in image.properties)) {
      return false;
    }

    const failures = await this.#cleanAll(imageId, { image });
    if (failures.length > 0) {
      this.logger.debug(
        { image_id: imageId, stores: failures.map((f) => f.storeId) },
        'image data cleanup still waits for a store',
      );
      return false;
    }
    await this.writes.end(imageId);
    this.logger.info(
      { image_id: imageId },
      'removed image data left in a store while it was down',
    );
    return true;
  }

  async #cleanAll(imageId: string, scope: CleanupScope): Promise<StoreFailure[]> {
    const image = scope.image === undefined ? await this.images.get(imageId) : scope.image;
    const inScope = (store: ImageStore) =>
      scope.stores === undefined ||
      store === this.stores.staging ||
      scope.stores.includes(store.id);
    const failures = await this.stores.discardUncommitted(imageId, inScope);
    const failed = new Set(failures.map((failure) => failure.storeId));
    for (const store of this.#unreferenced(image)) {
      if (failed.has(store.id) || !inScope(store)) continue;
      try {
        await store.delete(store.locationOf(imageId));
      } catch (error) {
        failures.push({ storeId: store.id, error });
      }
    }
    return failures;
  }

  /** Writable stores (staging included) whose data of the image no record points at. */
  #unreferenced(image: ImageRecord | null): ImageStore[] {
    const unreferenced: ImageStore[] = [];
    if (!image || !STAGED_STATUSES.has(image.status)) unreferenced.push(this.stores.staging);
    for (const { store } of this.stores.list()) {
      if (store.readOnly) continue;
      const held = image?.locations.some(
        (location) => this.stores.storeIdOf(location) === store.id,
      );
      if (!held) unreferenced.push(store);
    }
    return unreferenced;
  }
}
