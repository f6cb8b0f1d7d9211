/**
 * The image data the data-path benchmarks send and expect back.
 *
 * A stream is named by a seed and a length. Its 1 MiB chunks are views into one fixed
 * pseudo-random 8 MiB buffer, each at an offset drawn from the seed and the chunk's index, so
 * the content does not repeat in any simple way and yet producing it costs no copy and no
 * random number generation while a measurement runs. The same seed gives the same bytes in any
 * thread and any run, so expected checksums are stable.
 */
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

import type { HashJob } from './data-hash-worker.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

const BASE_BYTES = 8 * MiB;
const CHUNK_BYTES = MiB;
const OFFSETS = BASE_BYTES - CHUNK_BYTES + 1;

export interface StreamSpec {
  readonly seed: number;
  readonly bytes: number;
}

/** xorshift32: deterministic, so every thread rebuilds the same buffer in a few ms. */
function makeBase(): Buffer {
  const words = new Uint32Array(BASE_BYTES / 4);
  let x = 0x2545f491;
  for (let index = 0; index < words.length; index++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[index] = x >>> 0;
  }
  return Buffer.from(words.buffer);
}

const base = makeBase();

/** A 32-bit integer hash (murmur3's finaliser) of seed and chunk index. */
function offsetOf(seed: number, index: number): number {
  let h = Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) % OFFSETS;
}

/** The bytes of chunk `index` of the stream, shortened when the stream ends inside it. */
function chunkOf(spec: StreamSpec, index: number): Buffer {
  const length = Math.min(CHUNK_BYTES, spec.bytes - index * CHUNK_BYTES);
  const start = offsetOf(spec.seed, index);
  return base.subarray(start, start + length);
}

/** Views of the stream, in order; do not write to them. */
export function* streamChunks(spec: StreamSpec): Generator<Buffer> {
  for (let index = 0; index * CHUNK_BYTES < spec.bytes; index++) yield chunkOf(spec, index);
}

/**
 * Whether `data` equals the stream's bytes from `position` on. Comparing costs a memcmp, far
 * less than hashing, so a download can be checked byte for byte while it is measured.
 */
export function matchesAt(spec: StreamSpec, position: number, data: Buffer): boolean {
  if (position + data.length > spec.bytes) return false;
  let done = 0;
  while (done < data.length) {
    const at = position + done;
    const index = Math.floor(at / CHUNK_BYTES);
    const expected = chunkOf(spec, index).subarray(at - index * CHUNK_BYTES);
    const length = Math.min(expected.length, data.length - done);
    if (expected.compare(data, done, done + length, 0, length) !== 0) return false;
    done += length;
  }
  return true;
}

export interface ExpectedHashes {
  md5: string;
  sha512: string;
}

async function digestInWorker(algo: string, streams: StreamSpec[]): Promise<string[]> {
  const job: HashJob = { algo, streams };
  const worker = new Worker(new URL('./data-hash-worker.js', import.meta.url), {
    workerData: job,
  });
  const [digests] = (await once(worker, 'message')) as [string[]];
  await worker.terminate();
  return digests;
}

/**
 * MD5 and SHA-512 of each stream, each algorithm on its own thread, computed before anything
 * is timed so that producing the expected values costs no measurement anything.
 */
export async function expectedHashes(streams: StreamSpec[]): Promise<ExpectedHashes[]> {
  const [md5, sha512] = await Promise.all([
    digestInWorker('md5', streams),
    digestInWorker('sha512', streams),
  ]);
  return streams.map((_, index) => ({ md5: md5[index] ?? '', sha512: sha512[index] ?? '' }));
}
