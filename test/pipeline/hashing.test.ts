import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';

import { InvalidInputError } from '../../src/domain/errors.js';
import { closeHashPool, createStreamHasher } from '../../src/pipeline/hashing.js';
import type { StreamHashes, StreamHasher } from '../../src/pipeline/hashing.js';

const MiB = 1024 * 1024;

function expected(data: Buffer, algo = 'sha512'): StreamHashes {
  return {
    md5: createHash('md5').update(data).digest('hex'),
    algo,
    value: createHash(algo).update(data).digest('hex'),
    crc32: crc32(data).toString(16).padStart(8, '0'),
  };
}

/** Splits `data` into chunks of pseudo-random sizes between 1 and `max` bytes. */
function oddChunks(data: Buffer, max: number): Buffer[] {
  const chunks: Buffer[] = [];
  let offset = 0;
  let seed = 12345;
  while (offset < data.length) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const size = 1 + (seed % max);
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

/** Feeds chunks the way a stream consumer does: waits whenever `update()` asks it to. */
async function feed(hasher: StreamHasher, chunks: Buffer[]): Promise<void> {
  for (const chunk of chunks) await hasher.update(chunk);
}

async function hashChunks(chunks: Buffer[], algo = 'sha512'): Promise<StreamHashes> {
  const hasher = createStreamHasher(algo);
  await feed(hasher, chunks);
  return hasher.digest();
}

describe('createStreamHasher', () => {
  after(() => closeHashPool());

  it('hashes empty input', async () => {
    assert.deepEqual(await hashChunks([]), expected(Buffer.alloc(0)));
  });

  it('hashes a single byte', async () => {
    const data = Buffer.from([0x61]);
    assert.deepEqual(await hashChunks([data]), expected(data));
  });

  it('hashes many odd-sized chunks', async () => {
    const data = randomBytes(6 * MiB + 12_345);
    assert.deepEqual(await hashChunks(oddChunks(data, 70_000)), expected(data));
  });

  it('hashes sizes around the block and in-thread limits', async () => {
    for (const size of [64 * 1024, 64 * 1024 + 1, 300_000, MiB - 1, MiB, MiB + 1, 4 * MiB]) {
      const data = randomBytes(size);
      assert.deepEqual(await hashChunks(oddChunks(data, 50_000)), expected(data), `${size}`);
      assert.deepEqual(await hashChunks([data]), expected(data), `${size} in one chunk`);
    }
  });

  it('hashes 50 MB', async () => {
    const data = randomBytes(50_000_000);
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < data.length; offset += 64 * 1024) {
      chunks.push(data.subarray(offset, offset + 64 * 1024));
    }
    assert.deepEqual(await hashChunks(chunks), expected(data));
  });

  for (const algo of ['sha256', 'sha512', 'sha1', 'sha3-256']) {
    it(`uses ${algo} as the second algorithm`, async () => {
      const data = randomBytes(3 * MiB + 7);
      assert.deepEqual(await hashChunks(oddChunks(data, 70_000), algo), expected(data, algo));
    });
  }

  it('lets the caller reuse its buffer once update() has returned', async () => {
    const data = randomBytes(5 * MiB + 3);
    const scratch = Buffer.alloc(100_000);
    const hasher = createStreamHasher('sha512');

    for (const chunk of oddChunks(data, 100_000)) {
      const view = scratch.subarray(0, chunk.length);
      chunk.copy(view);
      await hasher.update(view);
      scratch.fill(0xee);
    }

    assert.deepEqual(await hasher.digest(), expected(data));
  });

  it('accepts updates that are not awaited', async () => {
    const data = randomBytes(9 * MiB + 1);
    const hasher = createStreamHasher('sha256');
    const pending = oddChunks(data, 512 * 1024).map((chunk) => hasher.update(chunk));

    await Promise.all(pending);
    assert.deepEqual(await hasher.digest(), expected(data, 'sha256'));
  });

  it('keeps 8 interleaved streams apart', async () => {
    const algos = ['sha512', 'sha256', 'sha1', 'sha512', 'sha256', 'sha1', 'sha512', 'md5'];
    const inputs = algos.map((_, i) => randomBytes(2 * MiB + i * 99_991));
    const chunked = inputs.map((data, i) => oddChunks(data, 10_000 + i * 7_000));
    const hashers = algos.map((algo) => createStreamHasher(algo));

    for (let round = 0; chunked.some((chunks) => round < chunks.length); round++) {
      await Promise.all(
        chunked.map(async (chunks, i) => {
          const chunk = chunks[round];
          if (chunk !== undefined) await hashers[i]?.update(chunk);
        }),
      );
    }

    const results = await Promise.all(hashers.map((hasher) => hasher.digest()));
    results.forEach((result, i) => {
      const data = inputs[i] ?? Buffer.alloc(0);
      assert.deepEqual(result, expected(data, algos[i]), `stream ${i}`);
    });
  });

  it('keeps concurrent streams fed at their own pace apart', async () => {
    const inputs = Array.from({ length: 8 }, (_, i) => randomBytes(3 * MiB + i * 1_234));
    const results = await Promise.all(
      inputs.map((data, i) => hashChunks(oddChunks(data, 20_000 + i * 5_000))),
    );
    results.forEach((result, i) => {
      assert.deepEqual(result, expected(inputs[i] ?? Buffer.alloc(0)), `stream ${i}`);
    });
  });

  it('recovers after a stream is aborted midway', async () => {
    const hasher = createStreamHasher('sha512');
    await feed(hasher, oddChunks(randomBytes(7 * MiB), 70_000));
    hasher.abort();

    await assert.rejects(hasher.digest());
    assert.throws(() => hasher.update(Buffer.from('late')));

    const data = randomBytes(3 * MiB + 5);
    assert.deepEqual(await hashChunks(oddChunks(data, 70_000)), expected(data));
  });

  it('rejects a pending digest when aborted', async () => {
    const hasher = createStreamHasher('sha512');
    await feed(hasher, [randomBytes(3 * MiB)]);
    const digest = hasher.digest();
    hasher.abort();

    await assert.rejects(digest);
  });

  it('refuses updates after digest', async () => {
    const hasher = createStreamHasher('sha512');
    await hasher.digest();
    assert.throws(() => hasher.update(Buffer.from('late')));
  });

  it('refuses an unknown algorithm', () => {
    assert.throws(() => createStreamHasher('sha513'), InvalidInputError);
    assert.throws(() => createStreamHasher(''), InvalidInputError);
  });

  it('works again after the pool was closed', async () => {
    await closeHashPool();
    const data = randomBytes(2 * MiB + 1);
    assert.deepEqual(await hashChunks([data]), expected(data));
  });
});
