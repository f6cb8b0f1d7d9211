/**
 * The stores as clients see them: discovery (GET /v2/info/stores and its admin detail) and
 * the removal of one copy of an image's data (DELETE /v2/stores/{store}/{image}), with
 * upstream's rules: only with several stores, only for active images, never the last copy.
 */
import type { RequestContext } from '../domain/context.js';
import { ConflictError, ForbiddenError, NotFoundError } from '../domain/errors.js';
import type { StoreRegistry } from '../stores/registry.js';
import type { ImageAccess } from './image-access.js';
import type { ImageDataService } from './image-data.js';

/** One store in GET /v2/info/stores; flags are the strings "true", as upstream sends them. */
export interface StoreSummary {
  id: string;
  description?: string;
  default?: 'true';
  'read-only'?: 'true';
}

export interface StoreDetail extends StoreSummary {
  type: string;
  weight: number;
  properties: Record<string, unknown>;
}

export class StoreService {
  constructor(
    private readonly access: ImageAccess,
    private readonly stores: StoreRegistry,
    private readonly data: ImageDataService,
  ) {}

  list(): StoreSummary[] {
    this.#requireMultiStore();
    return this.stores.list().map(({ store, spec }) => {
      const summary: StoreSummary = { id: spec.id };
      if (spec.description) summary.description = spec.description;
      if (store === this.stores.defaultStore) summary.default = 'true';
      if (store.readOnly) summary['read-only'] = 'true';
      return summary;
    });
  }

  detail(context: RequestContext): StoreDetail[] {
    const summaries = this.list();
    if (!this.access.policy.allowsRule('stores_info_detail', context)) {
      throw new ForbiddenError('You are not authorized to complete stores_info_detail action.');
    }
    return this.stores.list().map(({ store, spec }, index) => ({
      ...(summaries[index] as StoreSummary),
      type: spec.type,
      weight: spec.weight,
      properties: store.properties(),
    }));
  }

  async deleteFromStore(context: RequestContext, storeId: string, imageId: string) {
    this.#requireMultiStore();
    if (!this.stores.byId(storeId)) {
      throw new ConflictError(`The selected store ${storeId} is not available on this node.`);
    }
    const { image, target } = await this.access.find(
      context,
      imageId,
      `Failed to find image ${imageId}`,
    );
    this.access.enforce('get_image_location', context, target);
    this.access.enforce('delete_image_location', context, target);
    if (image.status !== 'active') {
      throw new ConflictError(
        "It's not allowed to remove image data from store if image status is not 'active'",
      );
    }
    if (image.locations.length === 1) {
      throw new ForbiddenError(
        'Cannot delete image data from the only store containing it. Consider deleting the ' +
          'image instead.',
      );
    }
    const copy = image.locations.find((location) => location.metadata.store === storeId);
    if (!copy) throw new NotFoundError(`Image ${imageId} is not stored in store ${storeId}.`);

    // The record goes first: a reader must not be sent to data that is being deleted.
    const remaining = image.locations.filter((location) => location !== copy);
    const next = { ...image, locations: remaining, updated_at: new Date().toISOString() };
    if (!(await this.access.repo.save(image, next))) {
      throw new ConflictError(`Image ${imageId} changed while its data was being removed.`);
    }
    await this.data.removeCopy(imageId, copy);
  }

  #requireMultiStore(): void {
    if (!this.stores.multiStore) {
      throw new NotFoundError('Multi backend is not supported at this site.');
    }
  }
}
