import { createRequire } from 'node:module';
import type Pg from 'pg';
import { PostgresDialect } from 'kysely';

import { jsonArrayFrom } from 'kysely/helpers/postgres';

import type { DatabaseDialect } from './dialect.js';

const INT8_OID = 20;

/**
 * PostgreSQL through node-postgres. Sizes are bigint columns; they are read as JavaScript
 * numbers, exact up to 2^53 bytes (8 PiB), beyond any image size this service accepts.
 */
// node-postgres is loaded only when PostgreSQL is configured, to keep SQLite starts fast.
const load = createRequire(import.meta.url);

export function postgresDialect(
  url: string,
  poolSize: number,
  onConnectionError: (error: Error) => void,
): DatabaseDialect {
  const pg = load('pg') as typeof Pg;
  const types = {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      oid === INT8_OID
        ? (value: string) => Number(value)
        : pg.types.getTypeParser(oid, format ?? 'text')) as typeof pg.types.getTypeParser,
  };
  const pool = new pg.Pool({ connectionString: url, max: poolSize, types });
  // An idle connection can be cut by a restart, failover or idle timeout of the server; the
  // pool drops it and opens another on demand, so the error must not end the process.
  pool.on('error', onConnectionError);
  return {
    name: 'postgres',
    kysely: new PostgresDialect({ pool }),
    // 23505: unique_violation.
    jsonArrayFrom: (subquery) => jsonArrayFrom(subquery) as never,
    isUniqueViolation: (error) => (error as { code?: string }).code === '23505',
  };
}
