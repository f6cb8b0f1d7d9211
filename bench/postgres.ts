/** Throw-away PostgreSQL databases on the local server (trust authentication). */
import { randomBytes } from 'node:crypto';

import pg from 'pg';

const SERVER = 'postgres://postgres@127.0.0.1:5432';
/** An existing database to connect to while creating and dropping ours. */
const ADMIN_URL = `${SERVER}/test`;

export interface BenchDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  return withDatabase(ADMIN_URL, work);
}

/** The server's version, or null when no PostgreSQL answers. */
export async function postgresVersion(): Promise<string | null> {
  try {
    return await withAdmin(async (client) => {
      const result = await client.query<{ server_version: string }>('SHOW server_version');
      return result.rows[0]?.server_version ?? null;
    });
  } catch {
    return null;
  }
}

/** Durability settings, which decide whether every commit waits for a disk flush. */
export async function postgresDurability(): Promise<string> {
  return withAdmin(async (client) => {
    const show = async (name: string) =>
      (await client.query<Record<string, string>>(`SHOW ${name}`)).rows[0]?.[name] ?? '?';
    const [commit, fsync] = [await show('synchronous_commit'), await show('fsync')];
    const flushes = commit !== 'off' && fsync === 'on';
    return (
      `synchronous_commit=${commit}, fsync=${fsync}: ` +
      (flushes ? 'every commit waits for a WAL flush' : 'commits do not wait for a disk flush')
    );
  });
}

export async function createDatabase(): Promise<BenchDatabase> {
  const name = `glimpse_bench_${randomBytes(6).toString('hex')}`;
  await withAdmin((client) => client.query(`CREATE DATABASE ${name}`));
  return {
    name,
    url: `${SERVER}/${name}`,
    // FORCE ends sessions a killed server may have left behind.
    async drop() {
      await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
    },
  };
}

/** Runs statements on a bench database with a short-lived connection. */
export async function withDatabase<T>(
  url: string,
  work: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/**
 * Gathers planner statistics, as autovacuum does on its own within a minute of a bulk load.
 * Without them PostgreSQL guesses one row per table and picks nested loops that rescan.
 */
export async function analyze(url: string): Promise<void> {
  await withDatabase(url, (client) => client.query('ANALYZE'));
}
