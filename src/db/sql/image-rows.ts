/** Conversion between image rows and ImageRecord. */
import type { Selectable } from 'kysely';

import type { ImageLocation, ImageRecord, ImageStatus, Visibility } from '../../domain/image.js';
import type { ImagesTable } from './tables.js';

export type ImageRow = Selectable<ImagesTable>;

export interface ImageDetails {
  tags: string[];
  properties: Record<string, string>;
  locations: ImageLocation[];
}

export function toRecord(row: ImageRow, details: ImageDetails): ImageRecord {
  return {
    id: row.id,
    name: row.name,
    status: row.status as ImageStatus,
    visibility: row.visibility as Visibility,
    protected: row.protected === 1,
    os_hidden: row.os_hidden === 1,
    checksum: row.checksum,
    os_hash_algo: row.os_hash_algo,
    os_hash_value: row.os_hash_value,
    data_crc32: row.data_crc32,
    owner: row.owner,
    size: row.size,
    virtual_size: row.virtual_size,
    container_format: row.container_format,
    disk_format: row.disk_format,
    min_ram: row.min_ram,
    min_disk: row.min_disk,
    created_at: row.created_at,
    updated_at: row.updated_at,
    ...details,
  };
}

/** The image's columns, without tags and properties, ready to insert or update. */
export function toColumns(image: ImageRecord): Omit<ImageRow, 'deleted' | 'deleted_at'> {
  return {
    id: image.id,
    name: image.name,
    status: image.status,
    visibility: image.visibility,
    protected: image.protected ? 1 : 0,
    os_hidden: image.os_hidden ? 1 : 0,
    checksum: image.checksum,
    os_hash_algo: image.os_hash_algo,
    os_hash_value: image.os_hash_value,
    data_crc32: image.data_crc32,
    owner: image.owner,
    size: image.size,
    virtual_size: image.virtual_size,
    container_format: image.container_format,
    disk_format: image.disk_format,
    min_ram: image.min_ram,
    min_disk: image.min_disk,
    created_at: image.created_at,
    updated_at: image.updated_at,
  };
}

/** Columns whose value differs between two versions of an image. */
export function changedColumns(previous: ImageRecord, next: ImageRecord): Partial<ImageRow> {
  const before = toColumns(previous);
  const after = toColumns(next);
  const changes: Partial<ImageRow> = {};
  for (const key of Object.keys(after) as Array<keyof typeof after>) {
    if (before[key] !== after[key]) (changes as Record<string, unknown>)[key] = after[key];
  }
  return changes;
}
