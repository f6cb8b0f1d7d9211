import type Pg from 'pg';
import { PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';

import { jsonArrayFrom } from 'kysely/helpers/postgres';

import type { DatabaseDialect } from './dialect.js';

const INT8_OID = 20;

/**
 * PostgreSQL through node-postgres. Sizes are bigint columns; they are read as JavaScript
 * numbers, exact up to 2^53 bytes (8 PiB), beyond any image size this service accepts.
 */
export async function postgresDialect(
  url: string,
  poolSize: number,
  onConnectionError: (error: Error) => void,
): Promise<DatabaseDialect> {
  // node-postgres is loaded only when PostgreSQL is configured, to keep SQLite starts fast.
  const pg = ((await import('pg')) as { default: typeof Pg }).default;
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
    kysely: new PostgresDialect({ pool: withNamedStatements(pool) }),
    // 23505: unique_violation.
    jsonArrayFrom: (subquery) => jsonArrayFrom(subquery) as never,
    isUniqueViolation: (error) => (error as { code?: string }).code === '23505',
  };
}

/** Distinct statements that get a name; beyond these, queries are sent unnamed. */
const NAMED_STATEMENTS = 256;
/** PostgreSQL's answer when a prepared statement's result columns changed (a migration ran). */
const FEATURE_NOT_SUPPORTED = '0A000';

/**
 * Sends queries as named prepared statements, so that PostgreSQL parses and plans each
 * statement once per connection rather than on every call: for the short queries of this
 * service, planning cost as much as running. The names are bounded (the service issues a few
 * dozen statement shapes; list filters can make more), and a statement whose plan a migration
 * of another process invalidated is sent again under a new name.
 */
function withNamedStatements(pool: Pg.Pool): PostgresPool {
  const names = new Map<string, string>();
  let counter = 0;
  const nameOf = (text: string): string | undefined => {
    let name = names.get(text);
    if (name === undefined && names.size < NAMED_STATEMENTS) {
      name = `glimpse_${++counter}`;
      names.set(text, name);
    }
    return name;
  };

  const wrap = (client: Pg.PoolClient): PostgresPoolClient => {
    const run = async (text: string, values: unknown[]) => {
      try {
        return await client.query({ name: nameOf(text), text, values });
      } catch (error) {
        if ((error as { code?: string }).code !== FEATURE_NOT_SUPPORTED) throw error;
        names.delete(text);
        return client.query({ name: nameOf(text), text, values });
      }
    };
    // Only the (sql, parameters) form: Kysely uses the cursor form for streams, which this
    // service does not configure.
    const query = (text: string, values: readonly unknown[]) => run(text, [...values]);
    return {
      query: query as unknown as PostgresPoolClient['query'],
      release: (destroy?: boolean) => client.release(destroy),
    };
  };

  return {
    connect: async () => wrap(await pool.connect()),
    end: () => pool.end(),
  };
}
