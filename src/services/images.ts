/**
 * Image record use cases. Each method follows upstream's order of checks: find the image
 * (hidden → 404), check policy, validate, check quotas, then write.
 */
import { randomUUID } from 'node:crypto';

import type { RequestContext } from '../domain/context.js';
import {
  ConflictError,
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  QuotaExceededError,
} from '../domain/errors.js';
import {
  transition,
  type ImageLocation,
  type ImageRecord,
  type ImageStatus,
} from '../domain/image.js';
import type { CreateRequest } from '../domain/image-input.js';
import { applyPatch, type PatchChange } from '../domain/image-patch.js';
import type { ImageListQuery } from '../domain/list-query.js';
import type { Policy, PolicyTarget } from '../domain/policy.js';
import { isImageVisible } from '../domain/visibility.js';
import type { ImageRepository, MarkerFacts } from '../db/repository.js';
import type { ProjectQuotas } from '../quota/project-quotas.js';
import type { ImageAccess } from './image-access.js';
import type { PropertyGuard } from './property-guard.js';

/** Removes the stored and staged data of an image that is being deleted. */
export interface ImageDataRemover {
  removeData(image: ImageRecord): Promise<void>;
  /** Deletes one copy's data (a location removed through PATCH). */
  removeCopy(imageId: string, location: ImageLocation): Promise<void>;
}

/** Applies the `/locations` operations of a patch (see LocationService). */
export interface LocationPatcher {
  applyPatch(
    context: RequestContext,
    target: PolicyTarget,
    image: ImageRecord,
    changes: readonly PatchChange[],
  ): Promise<{ image: ImageRecord; removed: ImageLocation[] }>;
}

export interface ImageSettings {
  /** Negative means unlimited, as in upstream. */
  readonly imagePropertyQuota: number;
  readonly imageTagQuota: number;
  /** Load locations with listed images (when views show locations or stores). */
  readonly listWithLocations: boolean;
}

export interface ImageListPage {
  readonly images: ImageRecord[];
  /** Id to continue after, when the page was full. */
  readonly nextMarker: string | null;
}

export class ImageService {
  readonly #repo: ImageRepository;
  readonly #policy: Policy;
  readonly #access: ImageAccess;
  readonly #settings: ImageSettings;
  readonly #data: ImageDataRemover;
  readonly #properties: PropertyGuard;
  readonly #projectQuotas: ProjectQuotas;
  readonly #locations: LocationPatcher;

  constructor(
    access: ImageAccess,
    settings: ImageSettings,
    data: ImageDataRemover,
    properties: PropertyGuard,
    projectQuotas: ProjectQuotas,
    locations: LocationPatcher,
  ) {
    this.#locations = locations;
    this.#repo = access.repo;
    this.#policy = access.policy;
    this.#access = access;
    this.#settings = settings;
    this.#data = data;
    this.#properties = properties;
    this.#projectQuotas = projectQuotas;
  }

  async create(context: RequestContext, request: CreateRequest): Promise<ImageRecord> {
    const owner = 'owner' in request.core ? (request.core.owner ?? null) : context.projectId;
    this.#checkCreatePolicy(context, owner, request.core.visibility);
    this.#properties.checkCreate(context, request.properties);

    checkQuota('tags', request.tags.length, this.#settings.imageTagQuota);
    checkQuota(
      'properties',
      countProperties(request.properties),
      this.#settings.imagePropertyQuota,
    );

    const now = new Date().toISOString();
    const image: ImageRecord = {
      id: request.id ?? randomUUID(),
      name: null,
      status: 'queued',
      visibility: 'shared',
      protected: false,
      os_hidden: false,
      checksum: null,
      os_hash_algo: null,
      os_hash_value: null,
      data_crc32: null,
      size: null,
      virtual_size: null,
      container_format: null,
      disk_format: null,
      min_ram: 0,
      min_disk: 0,
      ...request.core,
      owner,
      created_at: now,
      updated_at: now,
      tags: request.tags,
      properties: request.properties,
      locations: [],
    };
    // Counted against the caller's project (image_count_total), as upstream does.
    await this.#projectQuotas.create(context.projectId, image);
    return this.#properties.readable(context, image);
  }

  #checkCreatePolicy(context: RequestContext, owner: string | null, visibility?: string) {
    const target = { owner };
    if (!this.#policy.allows('add_image', context, target)) {
      if (!context.isAdmin && owner !== context.projectId) {
        throw new ForbiddenError(
          `You are not permitted to create images owned by '${owner ?? ''}'.`,
        );
      }
      this.#policy.enforce('add_image', context, target);
    }
    this.#checkVisibilityPolicy(context, target, visibility);
  }

  #checkVisibilityPolicy(context: RequestContext, target: PolicyTarget, visibility?: string) {
    if (visibility === 'public') this.#policy.enforce('publicize_image', context, target);
    if (visibility === 'community') this.#policy.enforce('communitize_image', context, target);
  }

  /** The image if the caller may see it; NotFoundError otherwise, hiding its existence. */
  async show(context: RequestContext, id: string): Promise<ImageRecord> {
    const { image } = await this.#access.find(context, id);
    return this.#properties.readable(context, image);
  }

  async list(context: RequestContext, query: ImageListQuery): Promise<ImageListPage> {
    this.#policy.enforce('get_images', context, { owner: context.projectId });

    if (query.marker !== null && !this.#access.mayExist(query.marker)) {
      throw invalidMarker(query.marker);
    }
    const scope = { isAdmin: context.isAdmin, projectId: context.projectId };
    const page = await this.#repo.list(query, scope, query.marker, {
      withLocations: this.#settings.listWithLocations,
    });
    if (query.marker !== null) await this.#checkMarker(context, query.marker, page.marker);

    // Like upstream, `next` depends on the rows the database returned, not on what survives
    // the per-image policy check.
    const rows = page.images;
    const last = rows.at(-1);
    const nextMarker = rows.length === query.limit && last ? last.id : null;
    // Listed images are visible by construction: a shared image of another project is only
    // listed through the caller's membership, so the target can say so without a lookup.
    const images = rows.filter((image) =>
      this.#policy.allows('get_image', context, this.#access.target(context, image, true)),
    );
    return {
      images: images.map((image) => this.#properties.readable(context, image)),
      nextMarker,
    };
  }

  /**
   * Refuses a marker that does not exist (400) or that the caller may not see (403), as
   * upstream does before it lists. The page was read first, along with the marker: nothing of
   * it is shown unless the marker passes, and its rows are the caller's to see anyway. Only an
   * empty page leaves the marker unknown, and costs a lookup of its own.
   */
  async #checkMarker(context: RequestContext, id: string, read: MarkerFacts | null) {
    const marker = read ?? (await this.#access.loadColumns(id));
    if (!marker) throw invalidMarker(id);

    const member = await this.#access.isMember(context, marker);
    if (!isImageVisible(context, marker, member)) {
      throw new ForbiddenError(`Forbidden to access image ${id}`);
    }
  }

  async update(
    context: RequestContext,
    id: string,
    changes: readonly PatchChange[],
  ): Promise<ImageRecord> {
    const { image, target } = await this.#access.find(context, id);
    const seen = this.#properties.readable(context, image);
    if (changes.length === 0) return seen;
    this.#policy.enforce('modify_image', context, target);

    // Location changes need the stores (sizes, existence), so they are applied first.
    const locationChanges = changes.filter((change) => change.path[0] === 'locations');
    const located =
      locationChanges.length === 0
        ? { image: seen, removed: [] }
        : await this.#locations.applyPatch(context, target, seen, locationChanges);
    await this.#checkStorageGrowth(image, located.image);
    const otherChanges = changes.filter((change) => change.path[0] !== 'locations');
    const patched = applyPatch(located.image, otherChanges, {
      isAdmin: context.isAdmin,
      checkVisibility: (visibility) => this.#checkVisibilityPolicy(context, target, visibility),
    });
    const next = this.#properties.mergePatch(context, image, seen, patched);
    this.#checkGrowth(image, next);
    const saved = await this.#save(image, { ...next, updated_at: new Date().toISOString() });
    for (const location of located.removed) await this.#data.removeCopy(image.id, location);
    return this.#properties.readable(context, saved);
  }

  /**
   * user_storage_quota, when locations were added: each new copy counts the image's size
   * against its owner's quota, as an upload would.
   */
  async #checkStorageGrowth(before: ImageRecord, after: ImageRecord): Promise<void> {
    const added = after.locations.length - before.locations.length;
    if (added <= 0 || after.size === null) return;
    await this.#projectQuotas.storageRoom(after.owner, added * after.size);
  }

  /** Quotas apply only when a change adds items, so an image over quota can still shrink. */
  #checkGrowth(before: ImageRecord, after: ImageRecord): void {
    if (after.tags.length > before.tags.length) {
      checkQuota('tags', after.tags.length, this.#settings.imageTagQuota);
    }
    const added = Object.keys(after.properties).some((key) => !(key in before.properties));
    if (added) {
      checkQuota(
        'properties',
        countProperties(after.properties),
        this.#settings.imagePropertyQuota,
      );
    }
  }

  async delete(context: RequestContext, id: string): Promise<void> {
    const notFound = `Failed to find image ${id} to delete`;
    const { image, target } = await this.#access.find(context, id, notFound);
    this.#policy.enforce('delete_image', context, target);
    if (image.protected) {
      throw new ForbiddenError(`Image ${id} is protected and cannot be deleted.`);
    }

    // Metadata goes first: once the image is deleted no reader can reach the data, and a
    // crash before the data is removed leaves an orphan object rather than a broken image.
    await this.#repo.delete(id, 'deleted');
    await this.#data.removeData(image);
  }

  async addTag(context: RequestContext, id: string, tag: string): Promise<void> {
    const { image, target } = await this.#access.find(context, id);
    this.#policy.enforce('modify_image', context, target);
    if (image.tags.includes(tag)) return;

    const next = { ...image, tags: [...image.tags, tag], updated_at: new Date().toISOString() };
    checkQuota('tags', next.tags.length, this.#settings.imageTagQuota);
    await this.#save(image, next);
  }

  async removeTag(context: RequestContext, id: string, tag: string): Promise<void> {
    const { image, target } = await this.#access.find(context, id);
    this.#policy.enforce('modify_image', context, target);
    if (!image.tags.includes(tag)) throw new NotFoundError('The resource could not be found.');

    const tags = image.tags.filter((existing) => existing !== tag);
    await this.#save(image, { ...image, tags, updated_at: new Date().toISOString() });
  }

  async deactivate(context: RequestContext, id: string): Promise<void> {
    await this.#toggleActive(context, id, 'deactivate');
  }

  async reactivate(context: RequestContext, id: string): Promise<void> {
    await this.#toggleActive(context, id, 'reactivate');
  }

  async #toggleActive(context: RequestContext, id: string, action: 'deactivate' | 'reactivate') {
    const { image, target } = await this.#access.find(context, id);
    this.#policy.enforce(action, context, target);

    const [from, to]: [ImageStatus, ImageStatus] =
      action === 'deactivate' ? ['active', 'deactivated'] : ['deactivated', 'active'];
    if (image.status === to) return;
    if (image.status !== from) {
      throw new ForbiddenError(`Not allowed to ${action} image in status '${image.status}'`);
    }
    const next = { ...image, ...transition(image, to), updated_at: new Date().toISOString() };
    await this.#save(image, next);
  }

  /** Writes a change; a lost race on the status surfaces as a conflict, not a silent no-op. */
  async #save(previous: ImageRecord, next: ImageRecord): Promise<ImageRecord> {
    if (!(await this.#repo.save(previous, next))) {
      throw new ConflictError(`Image ${next.id} was changed by another request; try again.`);
    }
    return next;
  }
}

function invalidMarker(id: string): InvalidInputError {
  return new InvalidInputError(`Invalid marker. Image ${id} could not be found.`);
}

/** Properties under the reserved os_glance prefix are bookkeeping and do not count. */
function countProperties(properties: Record<string, string>): number {
  return Object.keys(properties).filter((key) => !key.startsWith('os_glance')).length;
}

function checkQuota(what: 'tags' | 'properties', count: number, quota: number): void {
  if (quota >= 0 && count > quota) {
    throw new QuotaExceededError(
      `The limit has been exceeded on the number of allowed image ${what}. ` +
        `Attempted: ${count}, Maximum: ${quota}`,
    );
  }
}
