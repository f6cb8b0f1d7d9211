import { ConflictError, InvalidInputError } from './errors.js';

export const IMAGE_STATUSES = [
  'queued',
  'saving',
  'active',
  'killed',
  'deleted',
  'pending_delete',
  'deactivated',
  'uploading',
  'importing',
] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

export const VISIBILITIES = ['public', 'private', 'shared', 'community'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

/** One copy of an image's data. */
export interface ImageLocation {
  url: string;
  /** Free-form, e.g. `{"store": "file"}`. */
  metadata: Record<string, unknown>;
  status: 'active' | 'pending_delete' | 'deleted';
}

/**
 * An image as stored. Field names are the API's own (snake_case): they are the vocabulary of
 * PATCH paths, list filters and the database columns alike, so one name serves all three.
 */
export interface ImageRecord {
  id: string;
  name: string | null;
  status: ImageStatus;
  visibility: Visibility;
  protected: boolean;
  os_hidden: boolean;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  /** CRC-32 of the data (8 hex digits), for checking downloads; internal, never shown. */
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
  tags: string[];
  /** Additional properties: always strings, never one of the core field names. */
  properties: Record<string, string>;
  locations: ImageLocation[];
}

/** Core fields a client may set on create or change with PATCH (when rules allow). */
export const WRITABLE_CORE_FIELDS = [
  'name',
  'visibility',
  'protected',
  'os_hidden',
  'owner',
  'container_format',
  'disk_format',
  'min_ram',
  'min_disk',
] as const;
export type WritableCoreField = (typeof WRITABLE_CORE_FIELDS)[number];

/** Allowed status changes, the single source of truth for the image lifecycle. */
const TRANSITIONS: Readonly<Record<ImageStatus, readonly ImageStatus[]>> = {
  queued: ['saving', 'uploading', 'importing', 'active', 'deleted'],
  saving: ['active', 'killed', 'deleted', 'queued'],
  uploading: ['importing', 'queued', 'deleted'],
  importing: ['active', 'deleted', 'queued'],
  active: ['pending_delete', 'deleted', 'deactivated'],
  killed: ['deleted'],
  pending_delete: ['deleted', 'active'],
  deactivated: ['active', 'deleted'],
  deleted: [],
};

/** Statuses that carry data, and so need formats to be known first. */
const DATA_BEARING: readonly ImageStatus[] = ['saving', 'active', 'importing'];

export function canTransition(from: ImageStatus, to: ImageStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/**
 * Applies a status change to an image, enforcing the lifecycle rules. Returns the fields that
 * change with it (entering `queued` forgets any size learned from data).
 */
export function transition(image: ImageRecord, to: ImageStatus): Partial<ImageRecord> {
  if (!canTransition(image.status, to)) {
    throw new ConflictError(
      `Image status transition from ${image.status} to ${to} is not allowed`,
    );
  }

  const leavingEmpty = image.status === 'queued' || image.status === 'uploading';
  if (leavingEmpty && DATA_BEARING.includes(to)) {
    const missing = (['disk_format', 'container_format'] as const).filter((k) => !image[k]);
    if (missing.length === 1) {
      throw new InvalidInputError(`Property ${missing[0]} must be set prior to saving data.`);
    }
    if (missing.length > 1) {
      throw new InvalidInputError(
        `Properties ${missing.join(', ')} must be set prior to saving data.`,
      );
    }
  }

  if (to === 'queued') return { status: to, size: null, virtual_size: null };
  return { status: to };
}
