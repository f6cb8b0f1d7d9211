import type { Kysely, Migration } from 'kysely';

/** Asynchronous tasks (imports), claimed by one process at a time. */
export const createTaskTables: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('tasks')
      .addColumn('id', 'varchar(36)', (c) => c.primaryKey())
      .addColumn('type', 'varchar(30)', (c) => c.notNull())
      .addColumn('status', 'varchar(30)', (c) => c.notNull())
      .addColumn('owner', 'varchar(255)')
      .addColumn('image_id', 'varchar(36)')
      .addColumn('request_id', 'varchar(64)')
      .addColumn('user_id', 'varchar(255)')
      .addColumn('input', 'text', (c) => c.notNull())
      .addColumn('result', 'text')
      .addColumn('message', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('expires_at', 'varchar(32)')
      .addColumn('created_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('updated_at', 'varchar(32)', (c) => c.notNull())
      .addColumn('deleted', 'smallint', (c) => c.notNull().defaultTo(0))
      .addColumn('deleted_at', 'varchar(32)')
      .addColumn('worker_id', 'varchar(64)')
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();

    // Claiming scans pending tasks oldest first; listing pages by (created_at, id).
    await db.schema
      .createIndex('tasks_status_created')
      .on('tasks')
      .columns(['status', 'created_at'])
      .execute();
    await db.schema.createIndex('tasks_image').on('tasks').column('image_id').execute();
    await db.schema
      .createIndex('tasks_created')
      .on('tasks')
      .columns(['created_at', 'id'])
      .execute();
  },
};
