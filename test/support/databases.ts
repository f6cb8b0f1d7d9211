/**
 * The metadata databases every API suite runs against: SQLite always, PostgreSQL when it is
 * reachable. Under CI (CI=true) an unreachable PostgreSQL fails the run instead of skipping.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  readonly name: 'sqlite' | 'postgres';
  /** Why the suite cannot run here, or null when it can. */
  readonly skip: string | null;
  /** A fresh, empty database for one suite, and how to drop it. */
  create(): Promise<{ url: string; drop(): Promise<void> }>;
}

export const POSTGRES_URL =
  process.env.GLIMPSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const isCi = process.env.CI === 'true';

async function postgresProblem(): Promise<string | null> {
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('select 1');
    return null;
  } catch (error) {
    return `PostgreSQL at ${POSTGRES_URL} is unreachable (${(error as Error).message})`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

const sqlite: TestDatabase = {
  name: 'sqlite',
  skip: null,
  create: async () => ({ url: '', drop: async () => undefined }),
};

async function postgres(): Promise<TestDatabase> {
  const problem = await postgresProblem();
  if (problem && isCi) throw new Error(`${problem}; CI requires PostgreSQL`);
  if (problem) process.stdout.write(`# skipping PostgreSQL suites: ${problem}\n`);

  return {
    name: 'postgres',
    skip: problem,
    async create() {
      const name = `glimpse_test_${randomBytes(6).toString('hex')}`;
      await adminQuery(`create database ${name}`);
      const url = new URL(POSTGRES_URL);
      url.pathname = `/${name}`;
      return {
        url: url.toString(),
        drop: () => adminQuery(`drop database if exists ${name} with (force)`),
      };
    },
  };
}

async function adminQuery(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

export async function testDatabases(): Promise<TestDatabase[]> {
  return [sqlite, await postgres()];
}
