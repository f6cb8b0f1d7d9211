import type { Kysely, Migration } from 'kysely';

/**
 * The CRC-32 of an image's data, recorded at upload next to its hashes. It is cheap to compute
 * again, so downloads are checked against it at full speed; images stored before it existed
 * (or added by location) have none and are checked against their MD5.
 */
export const addDataCrc: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('images').addColumn('data_crc32', 'varchar(8)').execute();
  },
};
