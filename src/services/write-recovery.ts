/**
 * Undoes data writes whose process died (crash, SIGKILL, power loss): the image goes back to
 * `queued` and whatever the write left in the stores is removed. Every process announces
 * itself with a heartbeat; a write belongs to a dead process when that process's pid is gone
 * on this host, or, on another host, when its heartbeat is stale. Cleanups that had to wait
 * for a store that was down are retried on every round, by whichever process comes first.
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
import type { StoreCleanup } from './store-cleanup.js';

export interface RecoverySettings {
  readonly workerId: string;
  /** How often to heartbeat and look for dead writers. */
  readonly intervalMs: number;
}

export class WriteRecovery {
  readonly #timer: { current: NodeJS.Timeout | null } = { current: null };
  readonly #self: Omit<WorkerRecord, 'heartbeatAt'>;
  /** The recovery round in progress, if any. */
  #round: Promise<number> | null = null;

  constructor(
    private readonly writes: DataWriteRegistry,
    private readonly images: ImageRepository,
    private readonly cleanup: StoreCleanup,
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

  /**
   * The heartbeat goes out on every tick, so that a slow round never makes this process look
   * dead; a round only starts once the previous one has ended, since rounds piling up on a
   * slow store would each add requests to what makes it slow.
   */
  async #tick(): Promise<void> {
    await this.writes.heartbeat(this.#self);
    if (this.#round) return;
    this.#round = this.recover().finally(() => {
      this.#round = null;
    });
    await this.#round;
  }

  /**
   * Finds writes of dead workers and undoes them, and retries pending cleanups; returns how
   * many records were dealt with. A store that fails leaves its record for the next round.
   */
  async recover(): Promise<number> {
    const workers = new Map((await this.writes.workers()).map((w) => [w.id, w]));
    const orphaned = (await this.writes.list()).filter((write) => {
      const worker = workers.get(write.workerId);
      return !worker || !this.#isAlive(worker);
    });

    let done = 0;
    for (const write of orphaned) {
      try {
        if (
          write.kind === 'cleanup'
            ? await this.cleanup.retry(write.imageId)
            : await this.#undo(write)
        ) {
          done += 1;
        }
      } catch (error) {
        this.logger.warn(
          { err: error, image_id: write.imageId },
          'could not undo an interrupted write yet; retrying on the next round',
        );
      }
    }
    for (const worker of workers.values()) {
      if (!this.#isAlive(worker)) await this.writes.removeWorker(worker.id);
    }
    return done;
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

  /** Cleans the stores and requeues the image; false when a store must be cleaned later. */
  async #undo(write: DataWrite): Promise<boolean> {
    const image = await this.images.get(write.imageId);
    const expected = write.kind === 'stage' ? 'uploading' : 'saving';
    const interrupted = image !== null && image.status === expected;
    const queued = interrupted
      ? { ...image, ...transition(image, 'queued'), updated_at: new Date().toISOString() }
      : image;

    // The stores go first, against the record as it will be: once the image is queued again
    // a new write may start. A store that is down leaves a cleanup record instead.
    const clean = await this.cleanup.clean(write.imageId, { image: queued });
    if (interrupted && queued) await this.images.save(image, queued);
    if (clean) await this.writes.end(write.imageId);
    this.logger.warn(
      { image_id: write.imageId, kind: write.kind, worker_id: write.workerId },
      'undid an interrupted data write of a dead process; the image is queued again',
    );
    return clean;
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
