import { join } from 'node:path';
import { Kysely, Migrator, sql, type Migration, type MigrationProvider } from 'kysely';

import type { MetadataRepositories } from '../repository.js';
import type { DatabaseDialect } from './dialects/dialect.js';
import { postgresDialect } from './dialects/postgres.js';
import { sqliteDialect } from './dialects/sqlite.js';
import { SqlImageRepository } from './image-repository.js';
import { SqlMemberRepository } from './member-repository.js';
import { SqlTaskRepository } from './task-repository.js';
import { createImageTables } from './migrations/0001-images.js';
import { createImageDataTables } from './migrations/0002-image-data.js';
import { createTaskTables } from './migrations/0003-tasks.js';
import { addDataCrc } from './migrations/0004-data-crc.js';
import type { Tables } from './tables.js';
import { SqlDataWriteRegistry } from './write-registry.js';

export interface DatabaseSettings {
  /** Empty for SQLite in dataDir; a postgres:// or postgresql:// URL for PostgreSQL. */
  readonly url: string;
  readonly dataDir: string;
  readonly poolSize: number;
  /** Told about a lost idle PostgreSQL connection (the pool reconnects by itself). */
  readonly onConnectionError?: (error: Error) => void;
}

/** Forward-only, applied in name order, recorded in kysely_migration. */
function migrationsFor(dialect: DatabaseDialect): Record<string, Migration> {
  return {
    '0001-images': createImageTables(dialect.name),
    '0002-image-data': createImageDataTables,
    '0003-tasks': createTaskTables,
    '0004-data-crc': addDataCrc,
  };
}

const noop = (): void => undefined;

export async function openDialect(settings: DatabaseSettings): Promise<DatabaseDialect> {
  if (/^postgres(ql)?:\/\//.test(settings.url)) {
    return postgresDialect(settings.url, settings.poolSize, settings.onConnectionError ?? noop);
  }
  if (settings.url.startsWith('sqlite:')) return sqliteDialect(settings.url.slice(7));
  return sqliteDialect(join(settings.dataDir, 'glimpse.sqlite'));
}

export async function openRepositories(settings: DatabaseSettings): Promise<MetadataRepositories> {
  const dialect = await openDialect(settings);
  const db = new Kysely<Tables>({ dialect: dialect.kysely });

  return {
    images: new SqlImageRepository(db, dialect),
    members: new SqlMemberRepository(db),
    tasks: new SqlTaskRepository(db, dialect),
    writes: new SqlDataWriteRegistry(db),
    migrate: () => migrate(db, dialect),
    close: () => db.destroy(),
  };
}

async function migrate(db: Kysely<Tables>, dialect: DatabaseDialect): Promise<void> {
  const migrations = migrationsFor(dialect);
  if (await isUpToDate(db, dialect, Object.keys(migrations))) return;

  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const { error } = await new Migrator({ db, provider }).migrateToLatest();
  if (error) throw error;
}

const MIGRATION_TABLE_EXISTS = sql<{ present: boolean }>`
  select to_regclass('kysely_migration') is not null as present`;

/**
 * Whether exactly these migrations have been applied: a query or two, where the migrator makes
 * about ten (on PostgreSQL a tenth of the start-up). Anything else, a new database or one
 * migrated by a newer release, goes to the migrator, which creates or refuses. PostgreSQL is
 * asked first whether the table exists, since a failed select would be logged by the server.
 */
async function isUpToDate(
  db: Kysely<Tables>,
  dialect: DatabaseDialect,
  names: readonly string[],
): Promise<boolean> {
  try {
    if (dialect.name === 'postgres') {
      const { rows } = await MIGRATION_TABLE_EXISTS.execute(db);
      if (!rows[0]?.present) return false;
    }
    const { rows } = await sql<{ name: string }>`select name from kysely_migration`.execute(db);
    const applied = new Set(rows.map((row) => row.name));
    return applied.size === names.length && names.every((name) => applied.has(name));
  } catch {
    return false;
  }
}

/** Applies pending schema migrations on a connection of its own, then closes it. */
export async function migrateDatabase(options: {
  readonly url: string;
  readonly dataDir: string;
}): Promise<void> {
  const repositories = await openRepositories({ ...options, poolSize: 1 });
  try {
    await repositories.migrate();
  } finally {
    await repositories.close();
  }
}
