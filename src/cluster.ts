/**
 * Several API processes on one port (`workers` > 1), the way upstream Glance forks one per CPU:
 * a Node process serves on one core, and each worker is a full server. They share nothing in
 * memory; the database and the stores hold all state, as they do for servers on several hosts.
 *
 * The primary migrates the database once, forks the workers and replaces one that dies. On
 * SIGINT or SIGTERM it passes the signal on and exits once every worker has finished its
 * requests. A worker whose primary is gone (killed with SIGKILL) shuts itself down.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';

/** A worker that dies sooner than this after its start counts as failing to start. */
const EARLY_DEATH_MS = 5_000;
/** After this many early deaths in a row the primary gives up rather than fork forever. */
const MAX_EARLY_DEATHS = 5;

export interface PrimaryOptions {
  readonly workers: number;
  /** Run before any worker starts (migrations, which must not race each other). */
  readonly prepare: () => Promise<void>;
  readonly logger: Logger;
}

export const isClusterWorker = cluster.isWorker;

/** Runs the primary: forks and watches the workers until a signal stops them. */
export async function runPrimary({ workers, prepare, logger }: PrimaryOptions): Promise<void> {
  await prepare();

  const startedAt = new Map<Worker, number>();
  let earlyDeaths = 0;
  let stopping = false;

  const fork = () => startedAt.set(cluster.fork(), Date.now());
  for (let index = 0; index < workers; index++) fork();

  cluster.on('exit', (worker, code, signal) => {
    const lifetime = Date.now() - (startedAt.get(worker) ?? 0);
    startedAt.delete(worker);
    if (stopping) {
      if (startedAt.size === 0) process.exit(0);
      return;
    }

    earlyDeaths = lifetime < EARLY_DEATH_MS ? earlyDeaths + 1 : 0;
    if (earlyDeaths >= MAX_EARLY_DEATHS) {
      logger.fatal(
        { pid: worker.process.pid, code, signal },
        `${earlyDeaths} workers in a row died within ${EARLY_DEATH_MS} ms of starting; ` +
          'giving up. Their error output above says why.',
      );
      stopAll('SIGTERM');
      process.exitCode = 1;
      return;
    }
    logger.error(
      { pid: worker.process.pid, code, signal },
      'an API worker died; starting another. Its writes in progress are undone by the others.',
    );
    fork();
  });

  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const worker of startedAt.keys()) worker.process.kill(signal);
    if (startedAt.size === 0) process.exit(process.exitCode ?? 0);
  };
  process.once('SIGINT', () => stopAll('SIGINT'));
  process.once('SIGTERM', () => stopAll('SIGTERM'));
}

/** In a worker: calls `shutdown` when the primary goes away without telling it to stop. */
export function onPrimaryGone(shutdown: () => void): void {
  if (cluster.isWorker) process.once('disconnect', shutdown);
}
