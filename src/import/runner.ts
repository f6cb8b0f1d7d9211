/**
 * Runs tasks from the shared queue in the database. Any process may claim any pending task;
 * claiming is atomic, so each task runs in exactly one place. A task whose process died is
 * put back in the queue (or failed after a few tries), so no task stays `processing` forever.
 */
import type { Logger } from 'pino';

import type { TaskRecord, TaskType } from '../domain/task.js';
import type { TaskRepository } from '../db/repository.js';

export interface TaskHandler {
  /** Does the work; the returned object becomes the task's `result`. */
  run(task: TaskRecord): Promise<Record<string, unknown>>;
  /** Undoes what a task that will not run again left behind. */
  abandon(task: TaskRecord, reason: string): Promise<void>;
}

export interface TaskRunnerSettings {
  readonly workerId: string;
  /** Tasks this process runs at once. */
  readonly concurrency: number;
  /** How often an idle process looks for work and for orphaned tasks. */
  readonly pollMs: number;
  /** How long a finished task is kept (task_time_to_live). */
  readonly timeToLiveHours: number;
  /** Tries before a task whose process keeps dying is failed. */
  readonly maxAttempts: number;
}

export class TaskRunner {
  readonly #running = new Set<Promise<void>>();
  #timer: NodeJS.Timeout | null = null;
  #checking: Promise<void> | null = null;
  #stopped = false;

  constructor(
    private readonly tasks: TaskRepository,
    private readonly handlers: Partial<Record<TaskType, TaskHandler>>,
    private readonly settings: TaskRunnerSettings,
    private readonly isWorkerAlive: (workerId: string) => Promise<boolean>,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.#schedule(0);
  }

  /** Looks for work now rather than at the next poll (a task was just queued here). */
  notify(): void {
    if (!this.#stopped) this.#schedule(0);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    // A queue check in progress holds a database connection; let it finish before closing.
    await Promise.allSettled([this.#checking, ...this.#running]);
  }

  #schedule(delay: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#checking = this.#tick().finally(() => {
        this.#checking = null;
      });
    }, delay);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      await this.#recoverOrphans();
      await this.tasks.purgeExpired(new Date().toISOString());
      while (!this.#stopped && this.#running.size < this.settings.concurrency) {
        const task = await this.tasks.claimNext(this.settings.workerId);
        if (!task) break;
        const run = this.#run(task).finally(() => {
          this.#running.delete(run);
          this.notify();
        });
        this.#running.add(run);
      }
    } catch (error) {
      this.logger.warn({ err: error }, 'task queue check failed; check the metadata database');
    }
    if (!this.#stopped) this.#schedule(this.settings.pollMs);
  }

  async #run(task: TaskRecord): Promise<void> {
    const handler = this.handlers[task.type];
    const log = this.logger.child({ task_id: task.id, image_id: task.image_id });
    try {
      if (!handler) throw new Error(`no handler for tasks of type ${task.type}`);
      const result = await handler.run(task);
      await this.#finish(task, 'success', result, '');
      log.info('task succeeded');
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      await this.#finish(task, 'failure', null, message);
      log.warn({ err: error }, 'task failed');
    }
  }

  async #finish(
    task: TaskRecord,
    status: 'success' | 'failure',
    result: Record<string, unknown> | null,
    message: string,
  ): Promise<void> {
    // As upstream, a finished task is kept for its time to live from when it finished.
    const finishedAt = Date.now();
    const expiresAt = finishedAt + this.settings.timeToLiveHours * 3_600_000;
    await this.tasks.update(task.id, 'processing', {
      status,
      result,
      message,
      updated_at: new Date(finishedAt).toISOString(),
      expires_at: new Date(expiresAt).toISOString(),
    });
  }

  /** Tasks left `processing` by a dead process: back to the queue, or failed after retries. */
  async #recoverOrphans(): Promise<void> {
    for (const orphan of await this.tasks.processing()) {
      if (orphan.workerId === this.settings.workerId) continue;
      if (orphan.workerId !== null && (await this.isWorkerAlive(orphan.workerId))) continue;

      if (orphan.attempts < this.settings.maxAttempts) {
        await this.tasks.release(orphan.id);
        this.logger.warn({ task_id: orphan.id }, 'requeued a task whose process died');
        continue;
      }
      const task = await this.tasks.get(orphan.id);
      const reason = `The task was interrupted ${orphan.attempts} times and was given up.`;
      if (task) await this.handlers[task.type]?.abandon(task, reason);
      await this.tasks.update(orphan.id, 'processing', { status: 'failure', message: reason });
    }
  }
}
