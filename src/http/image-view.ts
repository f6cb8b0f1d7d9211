/** The JSON representation of an image, as upstream's response serializer builds it. */
import type { ImageRecord } from '../domain/image.js';
import type { StoreRegistry } from '../stores/registry.js';

/** Bookkeeping properties upstream keeps internal and never shows. */
const HIDDEN_PROPERTIES = new Set(['os_glance_stage_host', 'os_glance_hash_op_host']);

export function imageView(image: ImageRecord): Record<string, unknown> {
  const view: Record<string, unknown> = {
    id: image.id,
    name: image.name,
    status: image.status,
    visibility: image.visibility,
    protected: image.protected,
    os_hidden: image.os_hidden,
    checksum: image.checksum,
    os_hash_algo: image.os_hash_algo,
    os_hash_value: image.os_hash_value,
    owner: image.owner,
    size: image.size,
    virtual_size: image.virtual_size,
    container_format: image.container_format,
    disk_format: image.disk_format,
    min_ram: image.min_ram,
    min_disk: image.min_disk,
    created_at: isoSeconds(image.created_at),
    updated_at: isoSeconds(image.updated_at),
    tags: image.tags,
    self: `/v2/images/${image.id}`,
    file: `/v2/images/${image.id}/file`,
    schema: '/v2/schemas/image',
  };

  // Built as one literal first, so every view shares a shape; a property never replaces a
  // core field of the same name.
  for (const key in image.properties) {
    if (!Object.hasOwn(view, key) && !HIDDEN_PROPERTIES.has(key))
      view[key] = image.properties[key];
  }
  return view;
}

/** What the deployment reveals about where image data lives. */
export interface LocationDisclosure {
  /** show_multiple_locations: the `locations` field. */
  readonly showLocations: boolean;
  /** show_image_direct_url: the `direct_url` field. */
  readonly showDirectUrl: boolean;
  readonly stores: StoreRegistry;
}

/** Whether image views need the locations loaded (list queries skip them otherwise). */
export function viewsNeedLocations(disclosure: LocationDisclosure): boolean {
  const { showLocations, showDirectUrl, stores } = disclosure;
  return showLocations || showDirectUrl || stores.multiStore;
}

/**
 * The image view with the location fields the deployment enables: `locations` (empty for a
 * deactivated image unless the caller is an admin), `direct_url` (the copy read first), and,
 * with several stores, `stores` (the ids of the stores holding a copy).
 */
export function imageViewWithLocations(
  image: ImageRecord,
  isAdmin: boolean,
  disclosure: LocationDisclosure,
): Record<string, unknown> {
  const view = imageView(image);
  const live = image.locations.filter((location) => location.status === 'active');
  const ordered = disclosure.stores.readingOrder(live);

  if (disclosure.showLocations) {
    const hidden = image.status === 'deactivated' && !isAdmin;
    view.locations = hidden
      ? []
      : ordered.map((location) => ({ url: location.url, metadata: location.metadata }));
  }
  const first = ordered[0];
  if (disclosure.showDirectUrl && first) view.direct_url = first.url;
  if (disclosure.stores.multiStore) {
    const ids = ordered
      .map((location) => location.metadata.store)
      .filter((id): id is string => typeof id === 'string');
    if (ids.length > 0) view.stores = [...new Set(ids)].join(',');
  }
  return view;
}

/** Upstream shows times to the second with a Z; they are stored with milliseconds. */
export function isoSeconds(stored: string): string {
  return `${stored.slice(0, 19)}Z`;
}
