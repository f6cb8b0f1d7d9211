import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteDialect } from 'kysely';

import { jsonArrayFrom } from 'kysely/helpers/sqlite';

import type { DatabaseDialect } from './dialect.js';

/**
 * SQLite through better-sqlite3. WAL lets readers proceed during writes, and NORMAL sync is
 * durable across process crashes (the common failure) while avoiding an fsync per commit.
 */
export function sqliteDialect(path: string): DatabaseDialect {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });

  const database = new Database(path);
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = NORMAL');
  database.pragma('foreign_keys = ON');
  // Several processes may share one file (CLI migrations next to a server); wait, don't fail.
  database.pragma('busy_timeout = 5000');

  return {
    name: 'sqlite',
    kysely: new SqliteDialect({ database: withStatementCache(database) }),
    jsonArrayFrom: (subquery) =>
      jsonArrayFrom(subquery as Parameters<typeof jsonArrayFrom>[0]) as never,
    isUniqueViolation: (error) =>
      /^SQLITE_CONSTRAINT_(PRIMARYKEY|UNIQUE)$/.test((error as { code?: string }).code ?? ''),
  };
}

/** How many distinct statements stay prepared; the service issues a few dozen shapes. */
const STATEMENT_CACHE_SIZE = 500;

type Row = Record<string, unknown>;

/** The part of a prepared statement Kysely's SQLite driver uses. */
interface KyselyStatement {
  readonly reader: boolean;
  all(parameters: readonly unknown[]): Row[];
  run(parameters: readonly unknown[]): Database.RunResult;
  iterate(parameters: readonly unknown[]): IterableIterator<Row>;
}

/**
 * Transactions begin IMMEDIATE, taking the write lock up front. A deferred transaction that
 * reads and then writes fails at once with SQLITE_BUSY when another process (a second API
 * worker, the CLI) wrote in between, where waiting for the lock lets it go ahead.
 *
 * Kysely prepares every query it runs; preparing costs more than running the small queries
 * this service makes, so prepared statements are kept by SQL text and reused.
 */
function withStatementCache(database: Database.Database) {
  const statements = new Map<string, KyselyStatement>();
  return {
    close: () => {
      statements.clear();
      database.close();
    },
    prepare: (sqlText: string) => {
      const text = sqlText === 'begin' ? 'begin immediate' : sqlText;
      let statement = statements.get(text);
      if (!statement) {
        if (statements.size >= STATEMENT_CACHE_SIZE) statements.clear();
        statement = readingRawRows(database.prepare(text));
        statements.set(text, statement);
      }
      return statement;
    },
  };
}

/**
 * A statement whose rows are read as arrays and made into objects here. better-sqlite3 builds
 * row objects a property at a time from C++, which for a row of twenty columns costs more than
 * running the query; an object built in JavaScript with the same keys in the same order every
 * time is cheap.
 */
function readingRawRows(statement: Database.Statement): KyselyStatement {
  if (!statement.reader) {
    return {
      reader: false,
      all: (parameters) => statement.all(...parameters) as Row[],
      run: (parameters) => statement.run(...parameters),
      iterate: (parameters) => statement.iterate(...parameters) as IterableIterator<Row>,
    };
  }
  statement.raw(true);
  const toObject = rowBuilder(statement.columns().map((column) => column.name));
  return {
    reader: true,
    all: (parameters) => (statement.all(...parameters) as unknown[][]).map(toObject),
    run: (parameters) => statement.run(...parameters),
    *iterate(parameters) {
      for (const values of statement.iterate(...parameters)) yield toObject(values as unknown[]);
    },
  };
}

/**
 * A function that makes a row object from a row's values. It is compiled from the column names
 * into one object literal, so every row of a statement shares one hidden class from the start;
 * adding the keys one by one costs V8 a shape transition per key and was a third of the time
 * of reading a page of images. A repeated column name keeps its last value, as better-sqlite3's
 * own row objects do. The names come from SQLite's description of the statement, and are
 * written as JSON string literals, which are JavaScript string literals too.
 */
export function rowBuilder(names: readonly string[]): (values: unknown[]) => Row {
  if (names.includes('__proto__')) {
    // In a literal, that key would set the prototype instead of making a property.
    return (values) => {
      const row: Row = {};
      names.forEach((name, index) =>
        Object.defineProperty(row, name, {
          value: values[index],
          enumerable: true,
          writable: true,
          configurable: true,
        }),
      );
      return row;
    };
  }
  const fields = names.map((name, index) => `${JSON.stringify(name)}: values[${index}]`);
  return new Function('values', `return { ${fields.join(', ')} };`) as (values: unknown[]) => Row;
}
