/**
 * The one path image bytes take into a store, for uploads, staging and imports alike: count
 * and cap the bytes, hash them, inspect their disk format, and write them, chunk by chunk,
 * with backpressure. Memory per stream stays bounded whatever the image size.
 */
import { InvalidInputError, QuotaExceededError } from '../domain/errors.js';
import type { StoreWriter } from '../stores/store.js';
import {
  createFormatInspector,
  type FormatInspector,
  type FormatVerdict,
} from './format/index.js';
import { createStreamHasher, type StreamHasher } from './hashing.js';

export interface IngestOptions {
  /** Largest number of bytes accepted (image_size_cap). */
  readonly sizeCap: number;
  /** Size the client announced; a different byte count is refused. */
  readonly declaredSize: number | null;
  /** os_hash_algo to compute beside MD5; null skips hashing (staging). */
  readonly hashAlgo: string | null;
  /** Declared disk_format to inspect against; null skips inspection. */
  readonly inspectAs: string | null;
}

export interface IngestResult {
  readonly size: number;
  readonly checksum: string | null;
  readonly hashAlgo: string | null;
  readonly hashValue: string | null;
  /** CRC-32 of the data, when it was hashed. */
  readonly crc32: string | null;
  readonly verdict: FormatVerdict | null;
}

export async function ingest(
  source: AsyncIterable<Buffer>,
  writer: StoreWriter,
  options: IngestOptions,
): Promise<IngestResult> {
  if (options.declaredSize !== null && options.declaredSize > options.sizeCap) {
    throw tooLarge();
  }
  const hasher = options.hashAlgo === null ? null : createStreamHasher(options.hashAlgo);
  const inspector = options.inspectAs === null ? null : createFormatInspector();

  try {
    const size = await pump(source, writer, hasher, inspector, options);
    if (options.declaredSize !== null && size !== options.declaredSize) {
      throw sizeMismatch(`${size} bytes`, options.declaredSize);
    }
    const hashes = hasher ? await hasher.digest() : null;
    return {
      size,
      checksum: hashes?.md5 ?? null,
      hashAlgo: hashes?.algo ?? null,
      hashValue: hashes?.value ?? null,
      crc32: hashes?.crc32 ?? null,
      verdict: inspector && options.inspectAs ? inspector.finish(options.inspectAs) : null,
    };
  } catch (error) {
    hasher?.abort();
    throw error;
  }
}

async function pump(
  source: AsyncIterable<Buffer>,
  writer: StoreWriter,
  hasher: StreamHasher | null,
  inspector: FormatInspector | null,
  { sizeCap, declaredSize }: IngestOptions,
): Promise<number> {
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > sizeCap) throw tooLarge();
    // Refused before the writer sees it: a store told the size may not take a byte more.
    if (declaredSize !== null && size > declaredSize) {
      throw sizeMismatch(`at least ${size} bytes`, declaredSize);
    }

    inspector?.push(chunk);
    const hashed = hasher?.update(chunk);
    await writer.write(chunk);
    if (hashed) await hashed;
  }
  return size;
}

function sizeMismatch(size: string, declaredSize: number): InvalidInputError {
  return new InvalidInputError(
    `Size of uploaded data (${size}) does not match the declared size (${declaredSize} bytes).`,
  );
}

function tooLarge(): QuotaExceededError {
  return new QuotaExceededError('The incoming image is too large');
}
