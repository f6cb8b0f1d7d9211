/**
 * Image locations set by clients rather than by uploads: the `/locations` operations of PATCH
 * (with show_multiple_locations), and the newer POST/GET /v2/images/{id}/locations. A
 * location must point into a configured store, at data that exists, and never at the local
 * file system; the limits (image_location_quota) and validation data rules are upstream's.
 */
import { randomUUID } from 'node:crypto';

import type { RequestContext } from '../domain/context.js';
import { hasRole } from '../domain/context.js';
import {
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  QuotaExceededError,
} from '../domain/errors.js';
import { transition, type ImageLocation, type ImageRecord } from '../domain/image.js';
import { isPlainObject } from '../domain/image-input.js';
import type { PatchChange } from '../domain/image-patch.js';
import type { PolicyTarget } from '../domain/policy/rules.js';
import type { TaskRecord } from '../domain/task.js';
import type { StoreRegistry } from '../stores/registry.js';
import type { ImageAccess } from './image-access.js';
import type { ImportLock } from './import-lock.js';

export interface LocationSettings {
  /** show_multiple_locations: PATCH of /locations is allowed. */
  readonly showLocations: boolean;
  /** image_location_quota; negative: no limit. */
  readonly locationQuota: number;
  readonly hashingAlgorithm: string;
}

/** What a client may send with a location to vouch for the data. */
export interface ValidationData {
  checksum?: string;
  os_hash_algo?: string;
  os_hash_value?: string;
}

/** The result of applying the location operations of a patch. */
export interface LocationPatch {
  readonly image: ImageRecord;
  /** Copies removed from the image, whose data is deleted once the image is saved. */
  readonly removed: ImageLocation[];
}

const HASH_BYTES: Readonly<Record<string, number>> = {
  md5: 16,
  sha1: 20,
  sha256: 32,
  sha384: 48,
  sha512: 64,
  sha3_512: 64,
};

export class LocationService {
  constructor(
    private readonly access: ImageAccess,
    private readonly stores: StoreRegistry,
    private readonly lock: ImportLock,
    private readonly settings: LocationSettings,
  ) {}

  /** Applies the `/locations` changes of a patch, in order, to a copy of the image. */
  async applyPatch(
    context: RequestContext,
    target: PolicyTarget,
    image: ImageRecord,
    changes: readonly PatchChange[],
  ): Promise<LocationPatch> {
    let current = image;
    const removed: ImageLocation[] = [];
    for (const change of changes) {
      if (change.op === 'remove') {
        this.access.enforce('delete_image_location', context, target);
        const result = this.#remove(current, change.path[1] ?? '');
        current = result.image;
        removed.push(result.removed);
      } else {
        // As upstream: an empty list is refused before the policy and the settings are asked.
        if (change.op === 'replace' && Array.isArray(change.value) && change.value.length === 0) {
          throw new ForbiddenError('Cannot set locations to empty list.');
        }
        this.access.enforce('set_image_location', context, target);
        current =
          change.op === 'add'
            ? await this.#add(current, change.path[1] ?? '', change.value)
            : await this.#replace(current, change.value);
      }
    }
    return { image: current, removed };
  }

  async #add(image: ImageRecord, position: string, value: unknown): Promise<ImageRecord> {
    this.#requireShown('add');
    if (image.status !== 'active' && image.status !== 'queued') {
      throw new ConflictError(
        `It's not allowed to add locations if image status is ${image.status}.`,
      );
    }
    const location = parseLocation(value);
    const validation = this.#newValidationData(image, [location.validation]);
    const index = positionOf(position, image.locations.length, true);
    if (index === null) throw new InvalidInputError('Invalid position for adding a location.');

    const checked = await this.checked(location);
    if (image.locations.some((existing) => existing.url === checked.location.url)) {
      throw new InvalidInputError(`The location ${checked.location.url} already exists`);
    }
    this.#checkQuota(image.locations.length + 1);
    const locations = [...image.locations];
    locations.splice(index, 0, checked.location);
    return this.#withLocations(image, locations, validation, checked.size);
  }

  async #replace(image: ImageRecord, value: unknown): Promise<ImageRecord> {
    this.#requireShown('update');
    if (!Array.isArray(value)) throw new InvalidInputError('Invalid locations');
    if (image.status !== 'active' && image.status !== 'queued') {
      throw new ConflictError(
        `It's not allowed to replace locations if image status is ${image.status}.`,
      );
    }
    const requested = value.map(parseLocation);
    const validation = this.#newValidationData(
      image,
      requested.map((location) => location.validation),
    );
    const urls = requested.map((location) => location.url).sort();
    const current = image.locations.map((location) => location.url).sort();
    const sameUrls = urls.join('\n') === current.join('\n');
    if (image.locations.length > 0 && !sameUrls) {
      throw new InvalidInputError(
        `Original locations is not empty: ${JSON.stringify(image.locations)}`,
      );
    }
    if (sameUrls) {
      const locations = requested.map((location) => this.#located(location));
      return { ...image, locations, updated_at: now() };
    }
    return this.#replaceEmpty(image, requested, validation);
  }

  async #replaceEmpty(
    image: ImageRecord,
    requested: ParsedLocation[],
    validation: ValidationData,
  ): Promise<ImageRecord> {
    if (new Set(requested.map((location) => location.url)).size !== requested.length) {
      const duplicate = requested.find(
        (location, index) => requested.findIndex((other) => other.url === location.url) < index,
      );
      throw new InvalidInputError(`The location ${duplicate?.url ?? ''} already exists`);
    }
    this.#checkQuota(requested.length);
    const checked = [];
    for (const location of requested) checked.push(await this.checked(location));
    const locations = checked.map((entry) => entry.location);
    return this.#withLocations(image, locations, validation, checked[0]?.size ?? null);
  }

  #remove(image: ImageRecord, position: string): { image: ImageRecord; removed: ImageLocation } {
    this.#requireShown('remove');
    if (image.status !== 'active') {
      throw new ConflictError(
        `It's not allowed to remove locations if image status is ${image.status}.`,
      );
    }
    if (image.locations.length === 1) {
      throw new ForbiddenError('Cannot remove last location in the image.');
    }
    const index = positionOf(position, image.locations.length, false);
    const removed = index === null ? undefined : image.locations[index];
    if (index === null || !removed) {
      throw new InvalidInputError('Invalid position for removing a location.');
    }
    const locations = image.locations.filter((_, at) => at !== index);
    return { image: { ...image, locations, updated_at: now() }, removed };
  }

  /** A queued image becomes active with its first location, taking the vouched values. */
  #withLocations(
    image: ImageRecord,
    locations: ImageLocation[],
    validation: ValidationData,
    size: number | null,
  ): ImageRecord {
    const next: ImageRecord = { ...image, locations, updated_at: now() };
    if (image.status !== 'queued') return next;
    return {
      ...next,
      ...transitionToActive(image),
      checksum: validation.checksum ?? image.checksum,
      os_hash_algo: validation.os_hash_algo ?? image.os_hash_algo,
      os_hash_value: validation.os_hash_value ?? image.os_hash_value,
      size: image.size ?? size,
    };
  }

  #requireShown(verb: 'add' | 'update' | 'remove'): void {
    if (!this.settings.showLocations) {
      throw new ForbiddenError(
        `It's not allowed to ${verb} locations if locations are invisible.`,
      );
    }
  }

  #checkQuota(count: number): void {
    const maximum = this.settings.locationQuota;
    if (maximum >= 0 && count > maximum) {
      throw new QuotaExceededError(
        'The limit has been exceeded on the number of allowed image locations. ' +
          `Attempted: ${count}, Maximum: ${maximum}`,
      );
    }
  }

  /**
   * A location the client gave, checked as upstream checks it: served by a configured store,
   * not on the local file system, and pointing at data (size above zero).
   */
  async checked(location: ParsedLocation): Promise<{ location: ImageLocation; size: number }> {
    const invalid = () => new InvalidInputError('Invalid location');
    if (!/^(https?|swift(\+https?)?|s3(\+https?)?):/i.test(location.url)) throw invalid();
    const located = this.#located(location);
    let size: number;
    try {
      size = await this.stores.forLocation(located).sizeOf(located.url);
    } catch {
      throw invalid();
    }
    if (!(size > 0)) throw invalid();
    return { location: located, size };
  }

  /** The location as recorded: with the id of the store serving it, when there are several. */
  #located(location: ParsedLocation): ImageLocation {
    const metadata = { ...location.metadata };
    const storeId = this.stores.storeIdOf({ url: location.url, metadata: {} });
    if (this.stores.multiStore && storeId !== null) metadata.store = storeId;
    return { url: location.url, metadata, status: 'active' };
  }

  /** Upstream's rules for validation data given with PATCH locations (409 on each). */
  #newValidationData(image: ImageRecord, given: ValidationData[]): ValidationData {
    const merged: Record<string, string> = {};
    for (const data of given) {
      for (const [key, value] of Object.entries(data)) {
        if (merged[key] !== undefined && merged[key] !== value) {
          throw new ConflictError(`Conflicting values for ${key}`);
        }
        merged[key] = value as string;
      }
    }
    const fresh: Record<string, string> = {};
    for (const [key, value] of Object.entries(merged)) {
      const current = image[key as keyof ValidationData];
      if (value === current) continue;
      if (current) throw new ConflictError(`${key} is already set with a different value`);
      fresh[key] = value;
    }
    if (Object.keys(fresh).length === 0) return {};
    if (image.status !== 'queued') {
      throw new ConflictError(
        `New value(s) for ${Object.keys(fresh).join(', ')} may only be provided when image ` +
          "status is 'queued'",
      );
    }
    this.#checkVouchedHashes(fresh);
    return fresh;
  }

  /** Upstream's checks, in its order: hex first, then the size the algorithm gives. */
  #checkVouchedHashes(fresh: ValidationData): void {
    if (fresh.checksum !== undefined) checkVouchedHex('checksum', fresh.checksum, 'md5');
    const algo = fresh.os_hash_algo;
    if (algo !== this.settings.hashingAlgorithm) {
      throw new ConflictError(
        `os_hash_algo must be ${this.settings.hashingAlgorithm}, not ${algo ?? 'None'}`,
      );
    }
    checkVouchedHex('os_hash_value', fresh.os_hash_value ?? '', algo);
  }

  /** GET /v2/images/{id}/locations: the bare list, for services and admins. */
  async list(context: RequestContext, id: string): Promise<Array<Omit<ImageLocation, 'status'>>> {
    const { image, target } = await this.access.find(context, id);
    this.access.enforce('fetch_image_location', context, target);
    const live = image.locations.filter((location) => location.status === 'active');
    return live.map(({ url, metadata }) => ({ url, metadata }));
  }

  /**
   * POST /v2/images/{id}/locations: checks the request, then queues a location_import task
   * that adds the location and computes (or checks) the hashes from the data. Returns the
   * task id.
   */
  async add(context: RequestContext, id: string, body: unknown): Promise<string> {
    const request = parseAddBody(body);
    const { image, target } = await this.access.find(context, id);
    if (image.status !== 'queued') {
      throw new ConflictError(
        `It's not allowed to add locations if image status is ${image.status}.`,
      );
    }
    this.access.enforce('add_image_location', context, target);
    if (!this.#isService(context) && !this.#httpStoreServes(request.url)) {
      throw new ForbiddenError('http store must be enabled to use location API by normal user.');
    }
    checkHashValue(request.validation, this.settings.hashingAlgorithm);
    const staleHolder = await this.lock.enforce(image);

    const task = newLocationTask(context, image, request);
    await this.lock.queue(image.id, task, staleHolder);
    return task.id;
  }

  #isService(context: RequestContext): boolean {
    return hasRole(context, 'service') || (context.serviceRoles ?? []).includes('service');
  }

  #httpStoreServes(url: string): boolean {
    if (!/^https?:\/\//i.test(url)) return false;
    return this.stores.list().some((entry) => entry.store.type === 'http');
  }
}

export interface ParsedLocation {
  readonly url: string;
  readonly metadata: Record<string, unknown>;
  readonly validation: ValidationData;
}

function parseLocation(value: unknown): ParsedLocation {
  if (!isPlainObject(value) || typeof value.url !== 'string' || !isPlainObject(value.metadata)) {
    throw new InvalidInputError('Invalid location');
  }
  const validation = value.validation_data ?? {};
  if (!isPlainObject(validation)) throw new InvalidInputError('Invalid validation_data');
  const known = ['checksum', 'os_hash_algo', 'os_hash_value'];
  for (const [key, item] of Object.entries(validation)) {
    if (!known.includes(key) || typeof item !== 'string') {
      throw new InvalidInputError(`Invalid validation_data: ${key}`);
    }
  }
  if ((validation.os_hash_algo === undefined) !== (validation.os_hash_value === undefined)) {
    throw new InvalidInputError('validation_data needs both os_hash_algo and os_hash_value');
  }
  return { url: value.url, metadata: value.metadata, validation: validation as ValidationData };
}

/** `-` or an index; an index equal to the length is only valid when adding. */
function positionOf(text: string, length: number, adding: boolean): number | null {
  if (text === '-') return adding ? length : length - 1;
  if (!/^\d+$/.test(text)) return null;
  const index = Number(text);
  if (adding) return index <= length ? index : null;
  return index < length ? index : null;
}

/** A vouched hash: hex digits in pairs (409 otherwise), as many bytes as `algo` gives. */
function checkVouchedHex(key: string, value: string, algo: string): void {
  if (!/^([0-9a-fA-F]{2})*$/.test(value)) {
    throw new ConflictError(`${key} (${value}) is not a valid hexadecimal value`);
  }
  const want = HASH_BYTES[algo] ?? 0;
  if (value.length !== want * 2) {
    throw new ConflictError(
      `${key} (${value}) is not the correct size for ${algo} (should be ${want} bytes)`,
    );
  }
}

function transitionToActive(image: ImageRecord): Partial<ImageRecord> {
  return transition(image, 'active');
}

interface AddRequest {
  readonly url: string;
  readonly validation: ValidationData;
}

function parseAddBody(body: unknown): AddRequest {
  if (!isPlainObject(body) || typeof body.url !== 'string' || body.url === '') {
    throw new InvalidInputError("Invalid request body: 'url' is a required property");
  }
  const extra = Object.keys(body).find((key) => key !== 'url' && key !== 'validation_data');
  if (extra !== undefined) {
    throw new InvalidInputError(`Additional properties are not allowed ('${extra}')`);
  }
  const validation = body.validation_data ?? {};
  if (!isPlainObject(validation)) throw new InvalidInputError('Invalid validation_data');
  const { os_hash_algo: algo, os_hash_value: value, ...rest } = validation;
  if (Object.keys(rest).length > 0 || (algo === undefined) !== (value === undefined)) {
    throw new InvalidInputError(
      'validation_data takes os_hash_algo and os_hash_value, both or neither',
    );
  }
  if (algo !== undefined && (typeof algo !== 'string' || !(algo in HASH_BYTES))) {
    throw new InvalidInputError(`os_hash_algo ${String(algo)} is not one of sha1, sha256, ...`);
  }
  if (value !== undefined && typeof value !== 'string') {
    throw new InvalidInputError('os_hash_value must be a string');
  }
  return { url: body.url, validation: { os_hash_algo: algo, os_hash_value: value } };
}

function checkHashValue(validation: ValidationData, defaultAlgo: string): void {
  const value = validation.os_hash_value;
  if (value === undefined) return;
  if (!/^[0-9a-fA-F]*$/.test(value) || value.length % 2 !== 0) {
    throw new InvalidInputError(`os_hash_value (${value}) is not a valid hexadecimal value`);
  }
  const algo = validation.os_hash_algo ?? defaultAlgo;
  const want = HASH_BYTES[algo] ?? 0;
  if (value.length !== want * 2) {
    throw new InvalidInputError(
      `os_hash_value: (${value}) is not the correct size for (${algo}) ` +
        `(should be (${want}) bytes)`,
    );
  }
}

function newLocationTask(
  context: RequestContext,
  image: ImageRecord,
  request: AddRequest,
): TaskRecord {
  const timestamp = now();
  const validation = request.validation.os_hash_value === undefined ? {} : request.validation;
  return {
    id: randomUUID(),
    type: 'location_import',
    status: 'pending',
    owner: context.projectId,
    image_id: image.id,
    request_id: context.requestId,
    user_id: context.userId,
    input: { image_id: image.id, loc_url: request.url, validation_data: validation },
    result: null,
    message: '',
    expires_at: null,
    created_at: timestamp,
    updated_at: timestamp,
  };
}

function now(): string {
  return new Date().toISOString();
}
