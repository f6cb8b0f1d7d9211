/**
 * Row types of the metadata tables, as Kysely sees them. Booleans are stored as 0/1 integers
 * and timestamps as ISO-8601 UTC text with milliseconds in both dialects, so that the same
 * queries, comparisons and keyset pagination work unchanged on SQLite and PostgreSQL.
 */
import type { Generated } from 'kysely';

export interface ImagesTable {
  id: string;
  name: string | null;
  status: string;
  visibility: string;
  protected: number;
  os_hidden: number;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  data_crc32: string | null;
  owner: string | null;
  size: number | null;
  virtual_size: number | null;
  container_format: string | null;
  disk_format: string | null;
  min_ram: number;
  min_disk: number;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  deleted: number;
}

export interface ImagePropertiesTable {
  image_id: string;
  name: string;
  value: string;
}

export interface ImageTagsTable {
  image_id: string;
  value: string;
}

export interface ImageMembersTable {
  id: Generated<number>;
  image_id: string;
  member: string;
  status: string;
  can_share: number;
  created_at: string;
  updated_at: string;
  deleted: number;
}

export interface ImageLocationsTable {
  image_id: string;
  /** Order of the location within the image, as clients see the list. */
  position: number;
  url: string;
  /** JSON object. */
  metadata: string;
  status: string;
  created_at: string;
}

export interface WorkersTable {
  id: string;
  hostname: string;
  pid: number;
  heartbeat_at: string;
}

export interface DataWritesTable {
  image_id: string;
  kind: string;
  worker_id: string;
  started_at: string;
}

export interface TasksTable {
  id: string;
  type: string;
  status: string;
  owner: string | null;
  image_id: string | null;
  request_id: string | null;
  user_id: string | null;
  /** JSON object. */
  input: string;
  /** JSON object or null. */
  result: string | null;
  message: string;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
  deleted: number;
  deleted_at: string | null;
  /** The process running the task, while it is processing. */
  worker_id: string | null;
  attempts: number;
}

export interface Tables {
  images: ImagesTable;
  image_properties: ImagePropertiesTable;
  image_tags: ImageTagsTable;
  image_members: ImageMembersTable;
  image_locations: ImageLocationsTable;
  workers: WorkersTable;
  data_writes: DataWritesTable;
  tasks: TasksTable;
}
