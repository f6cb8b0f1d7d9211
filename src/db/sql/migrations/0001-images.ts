import type { Kysely, Migration } from 'kysely';

import type { DialectName } from '../dialects/dialect.js';

/** Images with their properties, tags and memberships. */
export const createImageTables = (dialect: DialectName): Migration => ({
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('images')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('name', 'varchar(255)')
      .addColumn('status', 'varchar(30)', (c) => c.notNull())
      .addColumn('visibility', 'varchar(20)', (c) => c.notNull())
      .addColumn('protected', 'smallint', (c) => c.notNull().defaultTo(0))
      .addColumn('os_hidden', 'smallint', (c) => c.notNull().defaultTo(0))
      .addColumn('checksum', 'varchar(32)')
      .addColumn('os_hash_algo', 'varchar(64)')
      .addColumn('os_hash_value', 'varchar(128)')
      .addColumn('owner', 'varchar(255)')
      .addColumn('size', 'bigint')
      .addColumn('virtual_size', 'bigint')
      .addColumn('container_format', 'varchar(32)')
      .addColumn('disk_format', 'varchar(32)')
      .addColumn('min_ram', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('min_disk', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('deleted_at', 'varchar(32)')
      .addColumn('deleted', 'smallint', (c) => c.notNull().defaultTo(0))
      .execute();

    // Listing walks (created_at, id) in either direction, skipping deleted rows.
    await index(db, 'images_live_created', 'images', ['deleted', 'created_at', 'id']);
    await index(db, 'images_owner', 'images', ['owner']);
    await index(db, 'images_visibility', 'images', ['visibility']);
    await index(db, 'images_name', 'images', ['name']);
    await index(db, 'images_status', 'images', ['status']);
    await index(db, 'images_checksum', 'images', ['checksum']);

    await db.schema
      .createTable('image_properties')
      .addColumn('image_id', 'varchar(36)', (c) => c.notNull().references('images.id'))
      .addColumn('name', 'varchar(255)', (c) => c.notNull())
      .addColumn('value', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_properties_pk', ['image_id', 'name'])
      .execute();
    await index(db, 'image_properties_name_value', 'image_properties', ['name', 'value']);

    await db.schema
      .createTable('image_tags')
      .addColumn('image_id', 'varchar(36)', (c) => c.notNull().references('images.id'))
      .addColumn('value', 'varchar(255)', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_tags_pk', ['image_id', 'value'])
      .execute();
    await index(db, 'image_tags_value', 'image_tags', ['value']);

    await createMembers(db, dialect === 'postgres');
  },
});

async function createMembers(db: Kysely<unknown>, isPostgres: boolean): Promise<void> {
  await db.schema
    .createTable('image_members')
    .addColumn('id', isPostgres ? 'bigserial' : 'integer', (c) =>
      isPostgres ? c.primaryKey() : c.primaryKey().autoIncrement(),
    )
    .addColumn('image_id', 'varchar(36)', (c) => c.notNull().references('images.id'))
    .addColumn('member', 'varchar(255)', (c) => c.notNull())
    .addColumn('status', 'varchar(20)', (c) => c.notNull())
    .addColumn('can_share', 'smallint', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
    .addColumn('deleted', 'smallint', (c) => c.notNull().defaultTo(0))
    .addUniqueConstraint('image_members_image_member', ['image_id', 'member'])
    .execute();
  await index(db, 'image_members_member', 'image_members', ['member', 'status']);
}

async function index(
  db: Kysely<unknown>,
  name: string,
  table: string,
  columns: string[],
): Promise<void> {
  await db.schema.createIndex(name).on(table).columns(columns).execute();
}
