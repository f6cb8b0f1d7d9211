/** Download checks: against the recorded CRC-32, and against MD5 for data recorded without. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';

import { closeHashPool } from '../../src/pipeline/hashing.js';
import {
  ChecksumMismatchError,
  verifyingStream,
  type ExpectedHashes,
} from '../../src/pipeline/verify.js';

const data = randomBytes(3 * 1024 * 1024 + 5);
const good: ExpectedHashes = {
  md5: createHash('md5').update(data).digest('hex'),
  algo: 'sha512',
  value: createHash('sha512').update(data).digest('hex'),
  crc32: crc32(data).toString(16).padStart(8, '0'),
};

/** Streams `bytes` through the check in 64 KiB chunks; returns what came out (also in `out`). */
async function run(bytes: Buffer, expected: ExpectedHashes, out: Buffer[] = []): Promise<Buffer> {
  const chunks = [];
  for (let at = 0; at < bytes.length; at += 65536) chunks.push(bytes.subarray(at, at + 65536));
  await pipeline(Readable.from(chunks), verifyingStream(expected), async (source) => {
    for await (const chunk of source) out.push(chunk as Buffer);
  });
  return Buffer.concat(out);
}

function corrupted(): Buffer {
  const copy = Buffer.from(data);
  const middle = copy.length >> 1;
  copy[middle] = (copy[middle] ?? 0) ^ 0x01;
  return copy;
}

describe('download checks', () => {
  after(() => closeHashPool());

  for (const [name, expected] of [
    ['CRC-32', good],
    ['MD5 and os_hash_value (no CRC recorded)', { ...good, crc32: null }],
  ] as const) {
    it(`passes intact data through whole, against ${name}`, async () => {
      assert.ok((await run(data, expected)).equals(data));
    });

    it(`fails on one flipped bit, before the last chunk, against ${name}`, async () => {
      const out: Buffer[] = [];
      await assert.rejects(run(corrupted(), expected, out), ChecksumMismatchError);
      assert.ok(Buffer.concat(out).length < data.length, 'the whole body got through');
    });
  }
});
