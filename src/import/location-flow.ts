/**
 * What a location_import task does (POST /v2/images/{id}/locations): records the location and
 * derives the image's size and hashes from the data it points at.
 *
 * With validation data, the image is `importing` while the data is hashed, and it only
 * becomes active when the hash matches; a mismatch drops the location and puts the image
 * back to queued. Without validation data the image is active at once and its hashes follow.
 */
import type { Logger } from 'pino';

import { transition, type ImageLocation, type ImageRecord } from '../domain/image.js';
import type { TaskRecord } from '../domain/task.js';
import type { ImageRepository } from '../db/repository.js';
import type { ImageDataService } from '../services/image-data.js';
import { IMPORT_LOCK } from '../services/import-lock.js';
import type { LocationService } from '../services/locations.js';
import type { TaskHandler } from './runner.js';

/** The hidden property naming the process that hashes the image's data. */
const HASH_HOST = 'os_glance_hash_op_host';

export class LocationImportFlow implements TaskHandler {
  constructor(
    private readonly images: ImageRepository,
    private readonly locations: LocationService,
    private readonly data: ImageDataService,
    private readonly settings: { readonly hashingAlgorithm: string; readonly workerId: string },
    private readonly logger: Logger,
  ) {}

  async run(task: TaskRecord): Promise<Record<string, unknown>> {
    const { url, algo, value } = inputOf(task, this.settings.hashingAlgorithm);
    const image = await this.#lockedImage(task);
    try {
      const { location, size } = await this.locations.checked({
        url,
        metadata: {},
        validation: {},
      });
      const added = await this.#addLocation(image, location, size, value !== null);
      const hashes = await this.data.hashCopy(location, algo);
      if (value !== null && hashes.hashValue !== value.toLowerCase()) {
        throw new Error(`os_hash_value: (${value}) not matched with actual os_hash_value`);
      }
      await this.#finish(added, hashes, algo);
      await this.images.removePropertyIfEquals(image.id, IMPORT_LOCK, task.id);
      return { image_id: image.id };
    } catch (error) {
      await this.abandon(task);
      throw error;
    }
  }

  /** Back to queued without the location, lock released; best effort, never throws. */
  async abandon(task: TaskRecord): Promise<void> {
    if (!task.image_id) return;
    try {
      const image = await this.images.get(task.image_id);
      if (image && image.properties[IMPORT_LOCK] === task.id && image.status !== 'active') {
        const properties = withoutHashHost(image.properties);
        await this.images.save(image, {
          ...image,
          ...(image.status === 'queued' ? {} : transition(image, 'queued')),
          locations: [],
          properties,
          checksum: null,
          os_hash_algo: null,
          os_hash_value: null,
          data_crc32: null,
          updated_at: now(),
        });
      }
      await this.images.removePropertyIfEquals(task.image_id, IMPORT_LOCK, task.id);
    } catch (error) {
      this.logger.error(
        { err: error, image_id: task.image_id, task_id: task.id },
        'could not undo a failed location import; check the image',
      );
    }
  }

  async #lockedImage(task: TaskRecord): Promise<ImageRecord> {
    const image = task.image_id ? await this.images.get(task.image_id) : null;
    if (!image) throw new Error(`Image ${task.image_id ?? ''} no longer exists`);
    if (image.properties[IMPORT_LOCK] !== task.id) {
      throw new Error(`Image ${image.id} is no longer locked by this task`);
    }
    if (image.status !== 'queued') {
      throw new Error(`It's not allowed to add locations if image status is ${image.status}.`);
    }
    return image;
  }

  /** The location recorded; importing while a vouched hash is checked, else active. */
  async #addLocation(
    image: ImageRecord,
    location: ImageLocation,
    size: number,
    verifying: boolean,
  ): Promise<ImageRecord> {
    const next: ImageRecord = {
      ...image,
      ...transition(image, verifying ? 'importing' : 'active'),
      locations: [location],
      size,
      properties: { ...image.properties, [HASH_HOST]: this.settings.workerId },
      updated_at: now(),
    };
    return this.#save(image, next);
  }

  async #finish(
    image: ImageRecord,
    hashes: {
      size: number;
      checksum: string | null;
      hashValue: string | null;
      crc32: string | null;
    },
    algo: string,
  ): Promise<void> {
    const properties = withoutHashHost(image.properties);
    const next: ImageRecord = {
      ...image,
      ...(image.status === 'active' ? {} : transition(image, 'active')),
      size: hashes.size,
      checksum: hashes.checksum,
      os_hash_algo: algo,
      os_hash_value: hashes.hashValue,
      data_crc32: hashes.crc32,
      properties,
      updated_at: now(),
    };
    await this.#save(image, next);
  }

  async #save(previous: ImageRecord, next: ImageRecord): Promise<ImageRecord> {
    if (!(await this.images.save(previous, next))) {
      throw new Error(`Image ${previous.id} was changed or deleted while adding its location`);
    }
    return next;
  }
}

function inputOf(task: TaskRecord, defaultAlgo: string) {
  const url = task.input.loc_url;
  if (typeof url !== 'string') throw new Error('the task has no location url');
  const validation = (task.input.validation_data ?? {}) as Record<string, unknown>;
  const value = typeof validation.os_hash_value === 'string' ? validation.os_hash_value : null;
  const algo = typeof validation.os_hash_algo === 'string' ? validation.os_hash_algo : defaultAlgo;
  return { url, algo, value };
}

function withoutHashHost(properties: Record<string, string>): Record<string, string> {
  const rest = { ...properties };
  delete rest[HASH_HOST];
  return rest;
}

function now(): string {
  return new Date().toISOString();
}
