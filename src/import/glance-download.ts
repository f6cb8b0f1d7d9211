/**
 * What glance-download takes from the remote image besides its data: the disk and container
 * formats, and the properties whose names start with one of the configured prefixes
 * (glance_download_extra_properties), as upstream copies them. Bookkeeping properties
 * (os_glance*) are never copied.
 */
import type { ImageRecord } from '../domain/image.js';
import type { TaskRecord } from '../domain/task.js';
import type { RemoteImageRef, RemoteImageView } from './remote-glance.js';

/** The remote image the task's import request names. */
export function remoteRefOf(task: TaskRecord): RemoteImageRef {
  const request = task.input.import_req as { method?: Record<string, unknown> } | undefined;
  const method = request?.method ?? {};
  const { glance_region: region, glance_image_id: imageId } = method;
  const face = method.glance_service_interface ?? 'public';
  if (typeof region !== 'string' || typeof imageId !== 'string' || typeof face !== 'string') {
    throw new Error('the task does not name a remote image (glance_region, glance_image_id)');
  }
  return { region, imageId, interface: face };
}

/** The image described as the remote one; fails unless the remote image is active. */
export function withRemoteMetadata(
  image: ImageRecord,
  remote: RemoteImageView,
  prefixes: readonly string[],
): ImageRecord {
  if (remote.status !== 'active') {
    throw new Error(`Source image status should be active instead of ${String(remote.status)}`);
  }
  if (typeof remote.size !== 'number') {
    throw new Error('Size attribute of the remote image could not be determined.');
  }
  const copied = Object.entries(remote).filter(
    ([name, value]) =>
      !name.startsWith('os_glance') &&
      prefixes.some((prefix) => name.startsWith(prefix)) &&
      value !== null &&
      value !== undefined,
  );
  return {
    ...image,
    disk_format: stringOr(remote.disk_format, image.disk_format),
    container_format: stringOr(remote.container_format, image.container_format),
    properties: {
      ...image.properties,
      ...Object.fromEntries(copied.map(([name, value]) => [name, String(value)])),
    },
    updated_at: new Date().toISOString(),
  };
}

function stringOr(value: unknown, fallback: string | null): string | null {
  return typeof value === 'string' ? value : fallback;
}
