/** A fresh, empty place for the server to keep its metadata: a temp dir, plus a database. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { createDatabase, type BenchDatabase } from './postgres.js';
import type { DatabaseKind } from './report.js';
import { startServer, type RunningServer } from './server-process.js';

export const LABELS: Record<DatabaseKind, string> = { sqlite: 'SQLite', postgres: 'PostgreSQL' };

export interface Backend {
  readonly kind: DatabaseKind;
  readonly dataDir: string;
  /** Empty for SQLite (the server's default file in dataDir). */
  readonly databaseUrl: string;
  /** Command name of the database's own processes, whose CPU is reported; null if in-process. */
  readonly databaseCommand: string | null;
  start(): Promise<RunningServer>;
  cleanup(): Promise<void>;
}

export async function openBackend(kind: DatabaseKind, workers = 1): Promise<Backend> {
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-bench-'));
  let database: BenchDatabase | null = null;
  try {
    if (kind === 'postgres') database = await createDatabase();
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const databaseUrl = database?.url ?? '';
  return {
    kind,
    dataDir,
    databaseUrl,
    databaseCommand: kind === 'postgres' ? 'postgres' : null,
    start: () => startServer({ dataDir, databaseUrl, workers }),
    async cleanup() {
      await database?.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs work against a started server and always stops it and removes the backend. */
export async function withServer<T>(
  kind: DatabaseKind,
  work: (backend: Backend, server: RunningServer) => Promise<T>,
  workers = 1,
): Promise<T> {
  const backend = await openBackend(kind, workers);
  try {
    const server = await backend.start();
    try {
      return await work(backend, server);
    } finally {
      await server.stop();
    }
  } finally {
    await backend.cleanup();
  }
}

/** Start-ups measured on a backend of each sample, the last one's server kept running. */
export const STARTUP_SAMPLES = 3;

/** The median of some start-up times (a single slow start says more about the machine). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/**
 * Start-ups of a fresh, empty backend each (so each creates the schema), all stopped: the
 * samples besides the one of the server the scenarios then run on.
 */
export async function emptyStartups(kind: DatabaseKind, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let sample = 0; sample < count; sample++) {
    const backend = await openBackend(kind);
    try {
      const server = await backend.start();
      times.push(server.startupMs);
      await server.stop();
    } finally {
      await backend.cleanup();
    }
  }
  return times;
}
