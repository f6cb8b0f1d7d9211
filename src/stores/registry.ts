import type { BackendSpec, StoreLayout } from './backends.js';
import { StoreNotFoundError, type ImageStore } from './store.js';

/** Where a copy of an image's data is: a URL and the metadata recorded with it. */
export interface LocationRef {
  readonly url: string;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** A store that could not do what was asked, and why. */
export interface StoreFailure {
  readonly storeId: string;
  readonly error: unknown;
}

/** A configured store with what the configuration says about it. */
export interface RegisteredStore {
  readonly store: ImageStore;
  readonly spec: BackendSpec;
}

/**
 * The configured stores: where new data goes by default, where staged data waits for import,
 * which store serves a given location, and in which order copies are read.
 */
export class StoreRegistry {
  readonly multiStore: boolean;
  readonly staging: ImageStore;
  readonly #entries: readonly RegisteredStore[];
  readonly #defaultStore: ImageStore;

  constructor(layout: StoreLayout, entries: readonly RegisteredStore[], staging: ImageStore) {
    this.multiStore = layout.multiStore;
    this.staging = staging;
    this.#entries = entries;
    const chosen = entries.find((entry) => entry.spec.id === layout.defaultId);
    if (!chosen) throw new Error(`default store ${layout.defaultId} was not built`);
    this.#defaultStore = chosen.store;
  }

  get defaultStore(): ImageStore {
    return this.#defaultStore;
  }

  /** Every configured store, in configuration order (the staging store is not one). */
  list(): readonly RegisteredStore[] {
    return this.#entries;
  }

  byId(id: string): ImageStore | undefined {
    return this.#entries.find((entry) => entry.spec.id === id)?.store;
  }

  /**
   * The store a location belongs to: the one its metadata names, else the first that owns its
   * URL. Throws StoreNotFoundError when no configured store can serve it.
   */
  forLocation(location: LocationRef): ImageStore {
    const named = location.metadata.store;
    if (typeof named === 'string') {
      const store = this.byId(named);
      if (!store) throw new StoreNotFoundError(`store ${named} is not configured`);
      return store;
    }
    const owner = this.#entries.find((entry) => entry.store.owns(location.url));
    if (!owner) throw new StoreNotFoundError(`no configured store serves ${location.url}`);
    return owner.store;
  }

  /** The id of the store serving a location, or null when none does. */
  storeIdOf(location: LocationRef): string | null {
    try {
      return this.forLocation(location).id;
    } catch {
      return null;
    }
  }

  /**
   * Locations in reading order: stores named in `preferred` first (in that order), then by
   * store weight, highest first; equal weights keep their recorded order.
   */
  readingOrder<L extends LocationRef>(locations: readonly L[], preferred: string[] = []): L[] {
    const rank = (location: L): [number, number] => {
      const id = this.storeIdOf(location);
      const preference = id === null ? -1 : preferred.indexOf(id);
      const weight = this.#entries.find((entry) => entry.spec.id === id)?.spec.weight ?? 0;
      return [preference === -1 ? preferred.length : preference, -weight];
    };
    return locations
      .map((location, index) => ({ location, index, rank: rank(location) }))
      .sort((a, b) => a.rank[0] - b.rank[0] || a.rank[1] - b.rank[1] || a.index - b.index)
      .map((entry) => entry.location);
  }

  /**
   * Removes what uncommitted writes of an image left in staging and in every writable store
   * (that `include` accepts). Returns the stores that failed (down, most likely) with their
   * errors; the others are clean.
   */
  async discardUncommitted(
    imageId: string,
    include: (store: ImageStore) => boolean = () => true,
  ): Promise<StoreFailure[]> {
    const stores = [this.staging, ...this.#entries.map((entry) => entry.store)];
    const failed: StoreFailure[] = [];
    for (const store of stores) {
      if (store.readOnly || !include(store)) continue;
      try {
        await store.discardUncommitted(imageId);
      } catch (error) {
        failed.push({ storeId: store.id, error });
      }
    }
    return failed;
  }

  async close(): Promise<void> {
    const all = [...this.#entries.map((entry) => entry.store), this.staging];
    await Promise.allSettled(all.map((store) => store.close()));
  }
}
