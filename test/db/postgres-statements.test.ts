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

import type { ImageRecord } from '../../src/domain/image.js';
import type { MetadataRepositories } from '../../src/db/repository.js';
import { openRepositories } from '../../src/db/sql/database.js';
import { testDatabases } from '../support/databases.js';

const postgres = (await testDatabases()).find((database) => database.name === 'postgres');

function image(id: string): ImageRecord {
  const now = new Date().toISOString();
  return {
    id,
    name: 'prepared',
    status: 'queued',
    visibility: 'shared',
    protected: false,
    os_hidden: false,
    checksum: null,
    os_hash_algo: null,
    os_hash_value: null,
    data_crc32: null,
    owner: 'alice',
    size: null,
    virtual_size: null,
    container_format: 'bare',
    disk_format: 'raw',
    min_ram: 0,
    min_disk: 0,
    created_at: now,
    updated_at: now,
    tags: [],
    properties: {},
    locations: [],
  };
}

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
    await repositories.images.create(image(id));
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
