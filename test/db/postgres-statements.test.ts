/**
 * Queries go to PostgreSQL as named prepared statements. A migration run by another process
 * changes the columns a prepared `select images.*` returns, which PostgreSQL refuses to run
 * with the old plan; the statement is then prepared again under a new name, and the read
 * succeeds.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import type { MetadataRepositories } from '../../src/db/repository.js';
import { openRepositories } from '../../src/db/sql/database.js';
import { testDatabases } from '../support/databases.js';
import { queuedImage } from '../support/image-records.js';

const postgres = (await testDatabases()).find((database) => database.name === 'postgres');

describe('named statements on PostgreSQL', { skip: postgres?.skip ?? !postgres }, () => {
  let db: Awaited<ReturnType<NonNullable<typeof postgres>['create']>>;
  let repositories: MetadataRepositories;

  before(async () => {
    db = await postgres!.create();
    repositories = await openRepositories({ url: db.url, dataDir: '', poolSize: 1 });
    await repositories.migrate();
  });
  after(async () => {
    await repositories?.close();
    await db?.drop();
  });

  it('prepares a statement again once a migration changed its columns', async () => {
    const id = randomUUID();
    await repositories.images.create(queuedImage(id));
    assert.equal((await repositories.images.get(id))?.name, 'prepared');

    // Another process adds a column, as a newer release's migration would.
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query('alter table images add column added_later text');
    } finally {
      await other.end();
    }
    assert.equal((await repositories.images.get(id))?.name, 'prepared');
  });
});
