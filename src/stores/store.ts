/**
 * The contract every image data store implements. Stores know nothing of HTTP or of image
 * metadata: they keep byte streams under opaque locations.
 *
 * Writes go through a writer that ends in exactly one of commit or abort. Nothing written is
 * visible under the image's location before commit returns, so a crash, a failed check or an
 * abort never leaves partial data where a reader could find it.
 */
import type { Readable } from 'node:stream';

export interface ByteRange {
  /** First byte, inclusive. */
  readonly start: number;
  /** Last byte, inclusive. */
  readonly end: number;
}

export interface StoreWriter {
  /** Appends a chunk; resolves when the store can take more (backpressure). */
  write(chunk: Buffer): Promise<void>;
  /**
   * Makes the data durable (when the store is configured to) and visible, and returns the
   * location to record. After commit the writer is spent.
   */
  commit(): Promise<string>;
  /** Discards everything written; safe to call at any point, including after a failure. */
  abort(): Promise<void>;
}

/** The kinds of store Glimpse has drivers for. */
export type StoreType = 'file' | 'swift' | 's3' | 'http';

export interface ImageStore {
  /** Store id, as named in configuration and in location metadata. */
  readonly id: string;
  readonly type: StoreType;
  /** URL scheme of the locations this store hands out (`file`, `swift+http`, `s3`...). */
  readonly scheme: string;
  /**
   * A read-only store (http) refuses writers; its delete does nothing, since the data belongs
   * to someone else and removing a location only forgets it.
   */
  readonly readOnly: boolean;

  /** Prepares the store (directories, containers, buckets) before first use. */
  init(): Promise<void>;

  /** Releases connections; the store is not used afterwards. */
  close(): Promise<void>;

  /** Whether a location URL designates data kept by this store. */
  owns(location: string): boolean;

  /** Store-specific settings shown to admins by GET /v2/info/stores/detail. */
  properties(): Record<string, unknown>;

  /** Resolves when the store answers; throws StoreUnavailableError otherwise. */
  probe(): Promise<void>;

  /** The size in bytes of the data at a location; StoreNotFoundError when it is missing. */
  sizeOf(location: string): Promise<number>;

  /** The location a committed write of this image's data ends up at. */
  locationOf(imageId: string): string;

  /**
   * Starts writing the data of an image. `expectedSize` is the size the data was declared to
   * have, when known (null: unknown); a driver may choose how to store the data by it, and
   * refuses more bytes than declared. The caller checks that exactly that many came.
   */
  createWriter(imageId: string, expectedSize?: number | null): Promise<StoreWriter>;

  /**
   * Streams the data at a location, or only `range` of it. Throws StoreNotFoundError when the
   * object is missing. The stream errors if the store fails midway.
   */
  read(location: string, range?: ByteRange): Promise<Readable>;

  /** Removes the data; removing what is already gone is not an error. See readOnly. */
  delete(location: string): Promise<void>;

  /** Removes what uncommitted writes of this image left behind (after their process died). */
  discardUncommitted(imageId: string): Promise<void>;
}

/** The data a location points at is gone. */
export class StoreNotFoundError extends Error {}

/** The store cannot serve the request right now (down, full, permission denied). */
export class StoreUnavailableError extends Error {}

/** A write or delete was asked of a read-only store. */
export class StoreReadOnlyError extends Error {}
