/** Image records as the repositories store them, for tests below the HTTP API. */
import type { ImageRecord } from '../../src/domain/image.js';

/** A queued raw image owned by `alice`, with no data. */
export function queuedImage(id: string): ImageRecord {
  const now = new Date().toISOString();
  return {
    id,
    name: 'prepared',
    status: 'queued',
    visibility: 'shared',
    protected: false,
    os_hidden: false,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    data_crc32: null,
    owner: 'alice',
    size: null,
    virtual_size: null,
    container_format: 'bare',
    disk_format: 'raw',
    min_ram: 0,
    min_disk: 0,
    created_at: now,
    updated_at: now,
    tags: [],
    properties: {},
    locations: [],
  };
}
