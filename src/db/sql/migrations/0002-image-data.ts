import type { Kysely, Migration } from 'kysely';

/**
 * Where image data lives (locations), and which process is writing which image right now,
 * so that writes cut short by a crashed process can be found and undone by another.
 */
export const createImageDataTables: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('image_locations')
      .addColumn('image_id', 'varchar(36)', (c) => c.notNull().references('images.id'))
      .addColumn('position', 'integer', (c) => c.notNull())
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('metadata', 'text', (c) => c.notNull())
      .addColumn('status', 'varchar(30)', (c) => c.notNull())
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_locations_pk', ['image_id', 'position'])
      .execute();

    await db.schema
      .createTable('workers')
      .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
      .addColumn('hostname', 'varchar(255)', (c) => c.notNull())
      .addColumn('pid', 'integer', (c) => c.notNull())
      .addColumn('heartbeat_at', 'varchar(32)', (c) => c.notNull())
      .execute();

    await db.schema
      .createTable('data_writes')
      .addColumn('image_id', 'varchar(36)', (c) => c.primaryKey().references('images.id'))
      .addColumn('kind', 'varchar(20)', (c) => c.notNull())
      .addColumn('worker_id', 'varchar(64)', (c) => c.notNull())
      .addColumn('started_at', 'varchar(32)', (c) => c.notNull())
      .execute();
  },
};
