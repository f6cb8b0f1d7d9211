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

export interface ImageStore {
  /** Store id, as named in configuration and in location metadata. */
  readonly id: string;
  /** URL scheme of the locations this store hands out (`file`, `swift+http`, `s3`...). */
  readonly scheme: string;

  /** The location a committed write of this image's data ends up at. */
  locationOf(imageId: string): string;

  /** Starts writing the data of an image. */
  createWriter(imageId: string): Promise<StoreWriter>;

  /**
   * Streams the data at a location, or only `range` of it. Throws StoreNotFoundError when the
   * object is missing. The stream errors if the store fails midway.
   */
  read(location: string, range?: ByteRange): Promise<Readable>;

  /** Removes the data; removing what is already gone is not an error. */
  delete(location: string): Promise<void>;

  /** Removes what uncommitted writes of this image left behind (after their process died). */
  discardUncommitted(imageId: string): Promise<void>;
}

/** The data a location points at is gone. */
export class StoreNotFoundError extends Error {}

/** The store cannot serve the request right now (down, full, permission denied). */
export class StoreUnavailableError extends Error {}
