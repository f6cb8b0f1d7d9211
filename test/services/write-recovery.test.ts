/**
 * WriteRecovery's rounds, with an in-memory write registry and a cleanup whose store is slow:
 * a round that outlasts the heartbeat interval must not be joined by more rounds (they would
 * pile up requests on the store that is already slow), while the heartbeat goes on.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import pino from 'pino';

import type {
  DataWrite,
  DataWriteRegistry,
  ImageRepository,
  WorkerRecord,
} from '../../src/db/repository.js';
import type { StoreCleanup } from '../../src/services/store-cleanup.js';
import { WriteRecovery } from '../../src/services/write-recovery.js';

const INTERVAL_MS = 20;
const SLOW_CLEANUP_MS = 300;

/** A registry holding one cleanup left by a store outage, counting heartbeats. */
class MemoryWrites implements DataWriteRegistry {
  heartbeats = 0;
  readonly #writes = new Map<string, DataWrite>();
  readonly #workers = new Map<string, WorkerRecord>();

  async heartbeat(worker: Omit<WorkerRecord, 'heartbeatAt'>): Promise<void> {
    this.heartbeats += 1;
    this.#workers.set(worker.id, { ...worker, heartbeatAt: new Date().toISOString() });
  }
  async removeWorker(workerId: string): Promise<void> {
    this.#workers.delete(workerId);
  }
  async workers(): Promise<WorkerRecord[]> {
    return [...this.#workers.values()];
  }
  async begin(write: DataWrite): Promise<void> {
    this.#writes.set(write.imageId, write);
  }
  async end(imageId: string): Promise<void> {
    this.#writes.delete(imageId);
  }
  async leaveForCleanup(imageId: string): Promise<void> {
    this.#writes.set(imageId, { imageId, kind: 'cleanup', workerId: '' });
  }
  async get(imageId: string): Promise<DataWrite | null> {
    return this.#writes.get(imageId) ?? null;
  }
  async list(): Promise<DataWrite[]> {
    return [...this.#writes.values()];
  }
}

/** A cleanup whose store takes SLOW_CLEANUP_MS to answer, and that never succeeds. */
class SlowCleanup {
  running = 0;
  mostAtOnce = 0;
  calls = 0;

  async retry(): Promise<boolean> {
    this.calls += 1;
    this.running += 1;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.running);
    await sleep(SLOW_CLEANUP_MS);
    this.running -= 1;
    return false;
  }
}

describe('WriteRecovery', () => {
  const stopped: WriteRecovery[] = [];
  after(() => Promise.all(stopped.map((recovery) => recovery.stop())));

  it('runs one round at a time while a store is slow, and keeps the heartbeat', async () => {
    const writes = new MemoryWrites();
    await writes.leaveForCleanup('d4f1c5b2-1d1e-4a53-9a55-3c0b8a2f5e10');
    const cleanup = new SlowCleanup();
    const recovery = new WriteRecovery(
      writes,
      { get: async () => null } as unknown as ImageRepository,
      cleanup as unknown as StoreCleanup,
      { workerId: 'worker-a', intervalMs: INTERVAL_MS },
      pino({ level: 'silent' }),
    );
    // start() runs a first round itself, before the timer.
    const started = recovery.start();
    await sleep(SLOW_CLEANUP_MS * 2.5);
    stopped.push(recovery);
    await started;

    assert.equal(cleanup.mostAtOnce, 1, `${cleanup.mostAtOnce} rounds overlapped`);
    assert.ok(cleanup.calls >= 2, `only ${cleanup.calls} rounds ran`);
    assert.ok(writes.heartbeats >= 10, `only ${writes.heartbeats} heartbeats were sent`);
  });
});
