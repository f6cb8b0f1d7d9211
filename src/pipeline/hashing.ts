/**
 * Checksums of image data computed while it streams: MD5 (Glance's `checksum`), the
 * multihash algorithm (`os_hash_algo`, `os_hash_value`), and a CRC-32, which costs little to
 * compute again and so lets downloads be checked at full speed.
 *
 * MD5 and SHA-512 together top out near 400 MB/s on one core, below what an upload can deliver,
 * so each algorithm runs on its own worker thread. Workers form a small process-wide pool; every
 * hasher opens one "lane" on two different workers, and a worker multiplexes the lanes of all
 * concurrent streams by id.
 *
 * Chunks are copied once into reusable SharedArrayBuffer blocks, and the same block is
 * posted to both workers, so neither cloning nor transferring happens per worker. Measured on
 * two cores over 1 GiB in 1 MiB messages: posting the Buffer (cloned for each worker) 470-650
 * MB/s, transferring a copy to each worker 530-620 MB/s, shared reused blocks 610-700 MB/s, with
 * MD5 alone at ~720 MB/s. A fresh SharedArrayBuffer per block is slow (~290 MB/s), hence the
 * free list. Fed 64 KiB chunks, 1 MiB blocks with 4 in flight reach 590-640 MB/s; 256 KiB blocks
 * or 2 in flight do worse, 8 in flight barely better. Blocks are 512 KiB: no slower than 1 MiB
 * in our runs, and eight concurrent uploads then hold about 10 MiB less.
 *
 * Memory stays bounded: a hasher has at most MAX_BLOCKS_IN_FLIGHT blocks posted and not yet
 * hashed by both workers, plus the one it is filling; `update()` returns a promise while it
 * waits for room. All hashers together have at most SHARED_BLOCKS_IN_FLIGHT beyond the first
 * of each, so many concurrent uploads share the read-ahead instead of each holding its own.
 */
import { createHash, getHashes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';

import { InvalidInputError } from '../domain/errors.js';

export interface StreamHashes {
  /** MD5 of the data, lowercase hex. */
  md5: string;

  /** The second algorithm, as passed to `createStreamHasher`. */
  algo: string;

  /** Digest of the second algorithm, lowercase hex. */
  value: string;

  /** CRC-32 (zlib's) of the data, 8 lowercase hex digits. */
  crc32: string;
}

export interface StreamHasher {
  /**
   * Feeds a chunk. When a promise is returned, wait for it before the next call and before
   * reusing `chunk`; without one, the chunk has already been copied. The promise never
   * rejects: a failure after the call shows in `digest()` (and makes later calls throw).
   */
  update(chunk: Buffer): Promise<void> | void;

  /** Ends the stream and returns both digests. */
  digest(): Promise<StreamHashes>;

  /** Drops the stream and frees what it holds; later calls fail. */
  abort(): void;
}

const BLOCK_SIZE = 512 * 1024;
const MAX_BLOCKS_IN_FLIGHT = 4;
/** Blocks in flight in the whole process beyond each hasher's first. */
const SHARED_BLOCKS_IN_FLIGHT = 4;

/** Blocks kept for reuse once released; beyond this they are left to the garbage collector. */
const MAX_FREE_BLOCKS = 12;

/**
 * Payloads up to this size are hashed in-thread at `digest()`: hashing 64 KiB with both
 * algorithms takes about as long as a round trip to the workers, and tiny uploads then never
 * start a thread.
 */
const LOCAL_LIMIT = 64 * 1024;

const POOL_SIZE = Math.min(Math.max(availableParallelism(), 2), 8);

/**
 * The worker, as CommonJS source evaluated in the thread: it has no file of its own, so the
 * same code runs from `dist/` and under a TypeScript loader.
 */
const WORKER_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const lanes = new Map();

function open(m) {
  try {
    lanes.set(m.id, { hash: createHash(m.algo), crc: m.crc ? 0 : null, error: null });
  } catch (err) {
    lanes.set(m.id, { hash: null, crc: null, error: String(err && err.message) });
  }
}

function data(m) {
  const lane = lanes.get(m.id);
  if (lane !== undefined && lane.hash !== null) {
    try {
      const view = new Uint8Array(m.block, 0, m.length);
      lane.hash.update(view);
      if (lane.crc !== null) lane.crc = crc32(view, lane.crc);
    } catch (err) {
      lane.hash = null;
      lane.error = String(err && err.message);
    }
  }
  parentPort.postMessage(m.id);
}

function digest(m) {
  const lane = lanes.get(m.id);
  lanes.delete(m.id);
  if (lane !== undefined && lane.hash !== null) {
    const crc = lane.crc === null ? null : lane.crc.toString(16).padStart(8, '0');
    parentPort.postMessage({ op: 'done', id: m.id, hex: lane.hash.digest('hex'), crc });
  } else {
    const message = lane === undefined ? 'unknown hash lane' : lane.error;
    parentPort.postMessage({ op: 'fail', id: m.id, message });
  }
}

function close(m) {
  lanes.delete(m.id);
  parentPort.postMessage({ op: 'closed', id: m.id });
}

parentPort.on('message', (m) => {
  if (m.op === 'data') data(m);
  else if (m.op === 'open') open(m);
  else if (m.op === 'digest') digest(m);
  else if (m.op === 'close') close(m);
});
`;

type WorkerRequest =
  | { op: 'open'; id: number; algo: string; crc: boolean }
  | { op: 'data'; id: number; block: SharedArrayBuffer; length: number }
  | { op: 'digest'; id: number }
  | { op: 'close'; id: number };

/** A bare number acknowledges one data block of that lane; it is the hot message. */
type WorkerReply =
  | number
  | { op: 'done'; id: number; hex: string; crc: string | null }
  | { op: 'fail'; id: number; message: string }
  | { op: 'closed'; id: number };

/** What a worker reports back about one lane. */
interface LaneListener {
  acked(): void;
  finished(hex: string, crc: string | null): void;
  failed(error: Error): void;
}

// ---------------------------------------------------------------------------------------------
// Shared blocks

const freeBlocks: SharedArrayBuffer[] = [];

function acquireBlock(): SharedArrayBuffer {
  return freeBlocks.pop() ?? new SharedArrayBuffer(BLOCK_SIZE);
}

function releaseBlock(block: SharedArrayBuffer): void {
  if (freeBlocks.length < MAX_FREE_BLOCKS) freeBlocks.push(block);
}

// ---------------------------------------------------------------------------------------------
// The shared read-ahead budget

/** Blocks in flight beyond the first of each hasher, over all hashers. */
let sharedInFlight = 0;
/** Hashers waiting for the shared budget, first come first served. */
const budgetWaiters: Array<() => void> = [];

function wakeBudgetWaiter(): void {
  budgetWaiters.shift()?.();
}

// ---------------------------------------------------------------------------------------------
// Worker pool

class HashWorker {
  private readonly worker: Worker;
  private readonly lanes = new Map<number, LaneListener>();

  /** Replies still expected; the thread keeps the process alive only while this is non-zero. */
  private outstanding = 0;

  private closing = false;

  constructor(private readonly onGone: (worker: HashWorker) => void) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, name: 'glimpse-hash' });
    this.worker.unref();
    this.worker.on('message', (reply: WorkerReply) => this.receive(reply));
    this.worker.on('error', (err: Error) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`hash worker exited with code ${code}`)));
  }

  get load(): number {
    return this.lanes.size;
  }

  /** Opens a lane hashing `algo`, and computing the CRC-32 too when `crc` is set. */
  open(id: number, algo: string, crc: boolean, listener: LaneListener): void {
    this.lanes.set(id, listener);
    this.post({ op: 'open', id, algo, crc }, false);
  }

  data(id: number, block: SharedArrayBuffer, length: number): void {
    this.post({ op: 'data', id, block, length }, true);
  }

  digest(id: number): void {
    this.post({ op: 'digest', id }, true);
  }

  close(id: number): void {
    this.post({ op: 'close', id }, true);
  }

  async terminate(): Promise<void> {
    this.closing = true;
    this.failLanes(new Error('hash pool closed'));
    await this.worker.terminate();
  }

  private post(request: WorkerRequest, expectsReply: boolean): void {
    if (expectsReply && this.outstanding++ === 0) this.worker.ref();
    this.worker.postMessage(request);
  }

  private receive(reply: WorkerReply): void {
    // Replies still queued when termination began must not unreference the dying thread.
    if (this.closing) return;
    if (--this.outstanding === 0) this.worker.unref();

    if (typeof reply === 'number') {
      this.lanes.get(reply)?.acked();
      return;
    }

    const listener = this.lanes.get(reply.id);
    this.lanes.delete(reply.id);
    if (reply.op === 'done') listener?.finished(reply.hex, reply.crc);
    else if (reply.op === 'fail') listener?.failed(new Error(reply.message));
  }

  /** The thread died: every lane on it is lost and the pool must not hand it out again. */
  private fail(error: Error): void {
    if (this.closing) return;
    this.closing = true;
    this.onGone(this);
    this.failLanes(error);
  }

  private failLanes(error: Error): void {
    const listeners = [...this.lanes.values()];
    this.lanes.clear();
    for (const listener of listeners) listener.failed(error);
  }
}

const slots: (HashWorker | undefined)[] = Array.from({ length: POOL_SIZE }, () => undefined);
let nextSlot = 0;

function vacate(worker: HashWorker): void {
  const index = slots.indexOf(worker);
  if (index >= 0) slots[index] = undefined;
}

function workerAt(index: number): HashWorker {
  const existing = slots[index];
  if (existing !== undefined) return existing;

  const created = new HashWorker(vacate);
  slots[index] = created;
  return created;
}

/**
 * Two distinct workers carrying the fewest lanes (an idle or unstarted slot counts as zero).
 * The scan starts at a rotating slot so that MD5 does not always land on the same thread.
 */
function pickWorkers(): [HashWorker, HashWorker] {
  const order = Array.from({ length: POOL_SIZE }, (_, i) => (i + nextSlot) % POOL_SIZE);
  nextSlot = (nextSlot + 1) % POOL_SIZE;

  const loadOf = (i: number): number => slots[i]?.load ?? 0;
  order.sort((a, b) => loadOf(a) - loadOf(b));

  return [workerAt(order[0] ?? 0), workerAt(order[1] ?? 1)];
}

export async function closeHashPool(): Promise<void> {
  const running = slots.filter((w): w is HashWorker => w !== undefined);
  slots.fill(undefined);
  freeBlocks.length = 0;
  await Promise.all(running.map((w) => w.terminate()));
}

// ---------------------------------------------------------------------------------------------
// Hasher

const knownAlgorithms = new Map<string, boolean>();

/** Listed by OpenSSL is not enough: some listed digests are disabled by the provider. */
function isUsableAlgorithm(algo: string): boolean {
  let usable = knownAlgorithms.get(algo);
  if (usable !== undefined) return usable;

  usable = getHashes().includes(algo);
  if (usable) {
    try {
      createHash(algo).digest();
    } catch {
      usable = false;
    }
  }

  knownAlgorithms.set(algo, usable);
  return usable;
}

interface InFlightBlock {
  block: SharedArrayBuffer;

  /** Lanes that have not yet hashed it. */
  pending: number;

  /** Whether it counts against the shared budget. */
  shared: boolean;
}

interface Lane {
  worker: HashWorker;
  queue: InFlightBlock[];
  hex: string | null;
  crc: string | null;
  done: boolean;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: Error): void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => undefined;
  let reject: (error: Error) => void = () => undefined;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

let nextLaneId = 1;

type HasherState = 'open' | 'digesting' | 'finished' | 'aborted';

class ParallelHasher implements StreamHasher {
  private readonly id = nextLaneId++;
  private state: HasherState = 'open';
  private error: Error | null = null;

  private current: SharedArrayBuffer | null = null;
  private filled = 0;
  private total = 0;

  /** Index 0 hashes MD5, index 1 the requested algorithm; empty until the first block. */
  private lanes: Lane[] = [];
  private inFlight = 0;
  private roomWaiter: (() => void) | null = null;

  /** The unfinished `update()` of a caller that did not wait for it. */
  private tail: Promise<void> | null = null;

  private result: Deferred<StreamHashes> | null = null;

  constructor(private readonly algo: string) {}

  update(chunk: Buffer): Promise<void> | void {
    this.assertOpen();

    if (this.tail !== null) return this.track(this.tail.then(() => this.write(chunk, 0)));

    const pending = this.write(chunk, 0);
    return pending === undefined ? undefined : this.track(pending);
  }

  digest(): Promise<StreamHashes> {
    if (this.result !== null) return this.result.promise;

    try {
      this.assertOpen();
    } catch (err) {
      return Promise.reject(err);
    }

    this.state = 'digesting';
    this.result = deferred<StreamHashes>();

    // abort() rejects this promise even when the caller has stopped listening (its upload
    // failed elsewhere); that must not surface as an unhandled rejection.
    this.result.promise.catch(() => undefined);

    void this.finish().catch((err: Error) => this.fail(err));
    return this.result.promise;
  }

  abort(): void {
    if (this.state === 'aborted' || this.state === 'finished') return;

    this.state = 'aborted';
    this.result?.reject(new Error('hashing aborted'));
    this.dropCurrent();
    this.closeLanes();
    this.wakeWriter();
  }

  private assertOpen(): void {
    if (this.error !== null) throw this.error;
    if (this.state !== 'open') throw new Error(`stream hasher is ${this.state}`);
  }

  private track(pending: Promise<void>): Promise<void> {
    const tail = pending.finally(() => {
      if (this.tail === tail) this.tail = null;
    });
    this.tail = tail;
    return tail;
  }

  /** Copies `chunk` from `offset` into blocks, waiting whenever too many are in flight. */
  private write(chunk: Buffer, offset: number): Promise<void> | void {
    while (offset < chunk.length) {
      // Aborted or failed while waiting: the failure is reported by digest(), not here.
      if (this.state === 'aborted') return;

      if (this.current === null) {
        if (this.inFlight >= MAX_BLOCKS_IN_FLIGHT) {
          return this.waitForRoom().then(() => this.write(chunk, offset));
        }
        if (this.inFlight > 0 && sharedInFlight >= SHARED_BLOCKS_IN_FLIGHT) {
          return this.waitForBudget().then(() => this.write(chunk, offset));
        }
        this.current = acquireBlock();
      }

      offset += this.fill(chunk, offset);
    }
  }

  private fill(chunk: Buffer, offset: number): number {
    const block = this.current as SharedArrayBuffer;
    const count = Math.min(BLOCK_SIZE - this.filled, chunk.length - offset);
    new Uint8Array(block, this.filled, count).set(chunk.subarray(offset, offset + count));

    this.filled += count;
    this.total += count;
    if (this.filled === BLOCK_SIZE) this.dispatch();
    return count;
  }

  /** Waits until the shared budget or this hasher's own blocks free up, whichever first. */
  private waitForBudget(): Promise<void> {
    return new Promise((resolve) => {
      let done = false;
      const wake = () => {
        if (done) return;
        done = true;
        const index = budgetWaiters.indexOf(wake);
        if (index >= 0) budgetWaiters.splice(index, 1);
        resolve();
      };
      budgetWaiters.push(wake);
      this.roomWaiter = wake;
    });
  }

  private waitForRoom(): Promise<void> {
    return new Promise((resolve) => {
      this.roomWaiter = resolve;
    });
  }

  private wakeWriter(): void {
    const waiter = this.roomWaiter;
    this.roomWaiter = null;
    waiter?.();
  }

  /** Posts the current block to both lanes; the same memory is read by both threads. */
  private dispatch(): void {
    const block = this.current as SharedArrayBuffer;
    const length = this.filled;
    this.current = null;
    this.filled = 0;

    if (this.lanes.length === 0) this.openLanes();

    const shared = this.inFlight > 0;
    const entry: InFlightBlock = { block, pending: this.lanes.length, shared };
    this.inFlight++;
    if (shared) sharedInFlight++;
    for (const lane of this.lanes) {
      lane.queue.push(entry);
      lane.worker.data(this.id, block, length);
    }
  }

  private openLanes(): void {
    const algos = ['md5', this.algo];
    this.lanes = pickWorkers().map((worker, index) => {
      const lane: Lane = { worker, queue: [], hex: null, crc: null, done: false };
      // The CRC rides with the second algorithm: MD5 and SHA-512 cost about the same.
      worker.open(this.id, algos[index] ?? 'md5', index === 1, this.listenerFor(lane));
      return lane;
    });
  }

  private listenerFor(lane: Lane): LaneListener {
    return {
      acked: () => this.acked(lane),
      finished: (hex, crc) => this.laneFinished(lane, hex, crc),
      failed: (error) => this.laneFailed(lane, error),
    };
  }

  private acked(lane: Lane): void {
    const entry = lane.queue.shift();
    if (entry !== undefined) this.settleBlock(entry);
  }

  /** A block is reusable once every lane has hashed it (or can no longer read it). */
  private settleBlock(entry: InFlightBlock): void {
    if (--entry.pending > 0) return;

    releaseBlock(entry.block);
    this.inFlight--;
    if (entry.shared) {
      sharedInFlight--;
      wakeBudgetWaiter();
    }
    this.wakeWriter();
  }

  private laneFinished(lane: Lane, hex: string, crc: string | null): void {
    lane.hex = hex;
    lane.crc = crc;
    lane.done = true;
    this.resolveIfComplete();
  }

  private laneFailed(lane: Lane, error: Error): void {
    lane.done = true;
    for (const entry of lane.queue.splice(0)) this.settleBlock(entry);
    this.fail(error);
  }

  private fail(error: Error): void {
    if (this.state === 'aborted' || this.state === 'finished') return;

    this.error ??= error;
    this.result?.reject(this.error);
    this.state = 'aborted';
    this.dropCurrent();
    this.closeLanes();
    this.wakeWriter();
  }

  private async finish(): Promise<void> {
    if (this.tail !== null) await this.tail;
    if (this.state !== 'digesting') return;

    if (this.lanes.length === 0 && this.total <= LOCAL_LIMIT) {
      this.finishLocally();
      return;
    }

    if (this.filled > 0) this.dispatch();
    this.dropCurrent();
    if (this.lanes.length === 0) this.openLanes();
    for (const lane of this.lanes) lane.worker.digest(this.id);
  }

  private finishLocally(): void {
    const data = this.current === null ? new Uint8Array(0) : new Uint8Array(this.current);
    const bytes = data.subarray(0, this.filled);
    const md5 = createHash('md5').update(bytes).digest('hex');
    const value = createHash(this.algo).update(bytes).digest('hex');
    const crc = crc32Hex(crc32(bytes));

    this.dropCurrent();
    this.state = 'finished';
    this.result?.resolve({ md5, algo: this.algo, value, crc32: crc });
  }

  private resolveIfComplete(): void {
    const [md5, other] = this.lanes;
    if (!md5?.hex || !other?.hex || !other.crc || this.state !== 'digesting') return;

    this.state = 'finished';
    this.result?.resolve({ md5: md5.hex, algo: this.algo, value: other.hex, crc32: other.crc });
  }

  private dropCurrent(): void {
    if (this.current !== null) releaseBlock(this.current);
    this.current = null;
    this.filled = 0;
  }

  /** Blocks already posted stay reserved until the worker acknowledges them before closing. */
  private closeLanes(): void {
    for (const lane of this.lanes) {
      if (!lane.done) lane.worker.close(this.id);
      lane.done = true;
    }
  }
}

/** A CRC-32 as stored and compared: 8 lowercase hex digits. */
export function crc32Hex(value: number): string {
  return value.toString(16).padStart(8, '0');
}

/**
 * Starts hashing one stream with MD5, `algo` and CRC-32.
 *
 * @throws InvalidInputError when `algo` is not a digest this runtime can compute.
 */
export function createStreamHasher(algo: string): StreamHasher {
  if (!isUsableAlgorithm(algo)) {
    throw new InvalidInputError(`Unsupported hashing algorithm: ${algo}`);
  }

  return new ParallelHasher(algo);
}
