/**
 * Checks data read back from a store against the checksums recorded at upload, while it
 * streams. The last chunk is held back until the check is done, so a client never receives a
 * complete-looking body for corrupted data: on a mismatch the stream fails instead.
 *
 * Data with a recorded CRC-32 is checked against it, here on the serving thread: zlib
 * computes it at several GB/s, so the check costs downloads little. Older data is checked
 * against its MD5 and os_hash_value, hashed on the worker threads of the upload pipeline, at
 * the speed of those hashes.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';

import { UnavailableError } from '../domain/errors.js';
import { crc32Hex, createStreamHasher } from './hashing.js';

/** Stored data no longer matches its checksum: the copy is unusable, not the request wrong. */
export class ChecksumMismatchError extends UnavailableError {}

export interface ExpectedHashes {
  readonly md5: string;
  /** os_hash_algo and os_hash_value, when the image has them. */
  readonly algo: string | null;
  readonly value: string | null;
  /** The CRC-32 recorded with the data, when it was. */
  readonly crc32: string | null;
}

export function verifyingStream(expected: ExpectedHashes): Transform {
  return expected.crc32 === null
    ? hashVerifyingStream(expected)
    : crcVerifyingStream(expected.crc32);
}

function crcVerifyingStream(expected: string): Transform {
  let crc = 0;
  let held: Buffer | null = null;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      const previous = held;
      held = chunk;
      crc = crc32(chunk, crc);
      callback(null, previous ?? undefined);
    },
    flush(callback: TransformCallback) {
      const actual = crc32Hex(crc);
      if (actual !== expected) return callback(mismatch('CRC-32', actual, expected));
      callback(null, held ?? undefined);
    },
  });
}

function hashVerifyingStream(expected: ExpectedHashes): Transform {
  const checksAlgo = expected.algo !== null && expected.value !== null;
  const hasher = createStreamHasher(checksAlgo ? (expected.algo as string) : 'md5');
  let held: Buffer | null = null;

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      const previous = held;
      held = chunk;
      const pending = hasher.update(chunk);
      if (!pending) return callback(null, previous ?? undefined);
      pending.then(() => callback(null, previous ?? undefined), callback);
    },
    flush(callback: TransformCallback) {
      hasher.digest().then((actual) => {
        if (actual.md5 !== expected.md5) {
          return callback(mismatch('MD5', actual.md5, expected.md5));
        }
        if (checksAlgo && actual.value !== expected.value) {
          return callback(mismatch(actual.algo, actual.value, expected.value as string));
        }
        callback(null, held ?? undefined);
      }, callback);
    },
    destroy(error, callback) {
      hasher.abort();
      callback(error);
    },
  });
}

function mismatch(algo: string, actual: string, expected: string): ChecksumMismatchError {
  return new ChecksumMismatchError(`stored data has ${algo} ${actual}, expected ${expected}`);
}
