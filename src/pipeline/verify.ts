/**
 * Checks data read back from a store against the checksum recorded at upload, while it
 * streams. The last chunk is held back until the digest is known, so a client never receives
 * a complete-looking body for corrupted data: on a mismatch the stream fails instead.
 */
import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

import { UnavailableError } from '../domain/errors.js';

/** Stored data no longer matches its checksum: the copy is unusable, not the request wrong. */
export class ChecksumMismatchError extends UnavailableError {}

export function verifyingStream(expectedMd5: string): Transform {
  const md5 = createHash('md5');
  let held: Buffer | null = null;

  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      md5.update(chunk);
      const previous = held;
      held = chunk;
      callback(null, previous ?? undefined);
    },
    flush(callback: TransformCallback) {
      const actual = md5.digest('hex');
      if (actual !== expectedMd5) {
        callback(
          new ChecksumMismatchError(`stored data has MD5 ${actual}, expected ${expectedMd5}`),
        );
        return;
      }
      callback(null, held ?? undefined);
    },
  });
}
