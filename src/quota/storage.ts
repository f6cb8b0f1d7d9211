/**
 * The legacy per-project storage quota (`user_storage_quota`): a byte budget for the data a
 * project keeps in the stores. It is checked before a write with the size the client declared,
 * caps the write itself, and is checked again with the real size before the image turns
 * active.
 */
import { QuotaExceededError } from '../domain/errors.js';

const UNIT_FACTORS: Readonly<Record<string, number>> = {
  B: 1,
  KB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};

/**
 * The quota in bytes, 0 meaning no quota, or null when the text is not a whole number
 * optionally followed, without a space, by B, KB, MB, GB or TB (powers of 1024).
 */
export function parseStorageQuota(text: string): number | null {
  const match = /^(\d+)([KMGT]?B)?$/.exec(text);
  if (!match?.[1]) return null;
  const bytes = Number(match[1]) * (UNIT_FACTORS[match[2] ?? 'B'] ?? 1);
  return Number.isSafeInteger(bytes) ? bytes : null;
}

/**
 * Refuses data that cannot fit in what is left of `quota`. A known size must fit whole; data
 * of unknown size is only refused when nothing is left, its write being capped instead.
 * Returns the bytes left, the most the write may take.
 */
export function checkStorageQuota(quota: number, storedBytes: number, size: number | null) {
  const remaining = quota - storedBytes;
  if (size === null ? remaining <= 0 : size > remaining) {
    throw storageQuotaExceeded(size, remaining);
  }
  return remaining;
}

/** The 413 for data over the storage quota; `size` is null when the data's size is unknown. */
export function storageQuotaExceeded(size: number | null, remaining: number): QuotaExceededError {
  const data = size === null ? 'The size of the data' : `The size of the data ${size}`;
  return new QuotaExceededError(
    `Image exceeds the storage quota: ${data} will exceed the limit. ` +
      `${Math.max(remaining, 0)} bytes remaining.`,
  );
}
