/**
 * Undoes data writes whose process died (crash, SIGKILL, power loss): the image goes back to
 * `queued` and whatever the write left in the store is removed. Every process announces
 * itself with a heartbeat; a write belongs to a dead process when that process's pid is gone
 * on this host, or, on another host, when its heartbeat is stale.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';

import { transition } from '../domain/image.js';
import type {
  DataWrite,
  DataWriteRegistry,
  ImageRepository,
  WorkerRecord,
} from '../db/repository.js';
import type { StoreRegistry } from '../stores/registry.js';

export interface RecoverySettings {
  readonly workerId: string;
  /** How often to heartbeat and look for dead writers. */
  readonly intervalMs: number;
}

export class WriteRecovery {
  readonly #timer: { current: NodeJS.Timeout | null } = { current: null };
  readonly #self: Omit<WorkerRecord, 'heartbeatAt'>;

  constructor(
    private readonly writes: DataWriteRegistry,
    private readonly images: ImageRepository,
    private readonly stores: StoreRegistry,
    private readonly settings: RecoverySettings,
    private readonly logger: Logger,
  ) {
    this.#self = { id: settings.workerId, hostname: hostname(), pid: process.pid };
  }

  async start(): Promise<void> {
    await this.writes.heartbeat(this.#self);
    await this.recover();
    this.#timer.current = setInterval(() => {
      this.#tick().catch((error: unknown) => {
        this.logger.warn({ err: error }, 'heartbeat failed; check the metadata database');
      });
    }, this.settings.intervalMs);
    this.#timer.current.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer.current) clearInterval(this.#timer.current);
    await this.writes.removeWorker(this.#self.id);
  }

  async #tick(): Promise<void> {
    await this.writes.heartbeat(this.#self);
    await this.recover();
  }

  /** Finds writes of dead workers and undoes them; returns how many were undone. */
  async recover(): Promise<number> {
    const workers = new Map((await this.writes.workers()).map((w) => [w.id, w]));
    const orphaned = (await this.writes.list()).filter((write) => {
      const worker = workers.get(write.workerId);
      return !worker || !this.#isAlive(worker);
    });

    for (const write of orphaned) await this.#undo(write);
    for (const worker of workers.values()) {
      if (!this.#isAlive(worker)) await this.writes.removeWorker(worker.id);
    }
    return orphaned.length;
  }

  /** Whether the worker is known and alive (used to find orphaned tasks, too). */
  async isWorkerAlive(workerId: string): Promise<boolean> {
    const worker = (await this.writes.workers()).find((candidate) => candidate.id === workerId);
    return worker !== undefined && this.#isAlive(worker);
  }

  #isAlive(worker: WorkerRecord): boolean {
    if (worker.id === this.#self.id) return true;
    if (worker.hostname === this.#self.hostname) return pidIsAlive(worker.pid);
    return Date.now() - Date.parse(worker.heartbeatAt) < 3 * this.settings.intervalMs;
  }

  async #undo(write: DataWrite): Promise<void> {
    // Store leftovers go first: once the image is queued again a new write may start.
    const store = this.stores.staging;
    await store.discardUncommitted(write.imageId);
    for (const { store: target } of this.stores.list()) {
      if (!target.readOnly) await target.discardUncommitted(write.imageId);
    }
    const image = await this.images.get(write.imageId);
    const expected = write.kind === 'stage' ? 'uploading' : 'saving';
    if (image && image.status === expected) {
      if (write.kind === 'stage') await store.delete(store.locationOf(image.id));
      const queued = {
        ...image,
        ...transition(image, 'queued'),
        updated_at: new Date().toISOString(),
      };
      await this.images.save(image, queued);
    }
    await this.writes.end(write.imageId);
    this.logger.warn(
      { image_id: write.imageId, kind: write.kind, worker_id: write.workerId },
      'undid an interrupted data write of a dead process; the image is queued again',
    );
  }
}

function pidIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
