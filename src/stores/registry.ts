import { StoreNotFoundError, type ImageStore } from './store.js';

/**
 * The configured stores: where new data goes by default, where staged data waits for import,
 * and which store serves a given location.
 */
export class StoreRegistry {
  constructor(
    readonly defaultStore: ImageStore,
    readonly staging: ImageStore,
    private readonly stores: readonly ImageStore[] = [defaultStore],
  ) {}

  byId(id: string): ImageStore | undefined {
    return this.stores.find((store) => store.id === id);
  }

  /** The store named in a location's metadata, else the default store. */
  forLocation(metadata: Record<string, unknown>): ImageStore {
    const id = typeof metadata.store === 'string' ? metadata.store : this.defaultStore.id;
    const store = this.byId(id);
    if (!store) throw new StoreNotFoundError(`store ${id} is not configured`);
    return store;
  }
}
