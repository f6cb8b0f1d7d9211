import type { Kysely, Transaction } from 'kysely';

import type { DataWrite, DataWriteRegistry, WorkerRecord } from '../repository.js';
import type { Tables } from './tables.js';

/** The worker id of records no worker holds: never a real worker's, so always orphaned. */
const NO_WORKER = '';

function writeOf(row: { image_id: string; kind: string; worker_id: string }): DataWrite {
  return { imageId: row.image_id, kind: row.kind as DataWrite['kind'], workerId: row.worker_id };
}

export class SqlDataWriteRegistry implements DataWriteRegistry {
  readonly #db: Kysely<Tables>;

  constructor(db: Kysely<Tables>) {
    this.#db = db;
  }

  async heartbeat(worker: Omit<WorkerRecord, 'heartbeatAt'>): Promise<void> {
    const heartbeat_at = new Date().toISOString();
    await this.#db
      .insertInto('workers')
      .values({ id: worker.id, hostname: worker.hostname, pid: worker.pid, heartbeat_at })
      .onConflict((conflict) => conflict.column('id').doUpdateSet({ heartbeat_at }))
      .execute();
  }

  async removeWorker(workerId: string): Promise<void> {
    await this.#db.deleteFrom('workers').where('id', '=', workerId).execute();
  }

  async workers(): Promise<WorkerRecord[]> {
    const rows = await this.#db.selectFrom('workers').selectAll().execute();
    return rows.map((row) => ({
      id: row.id,
      hostname: row.hostname,
      pid: row.pid,
      heartbeatAt: row.heartbeat_at,
    }));
  }

  async begin(write: DataWrite): Promise<void> {
    await recordWrite(this.#db, write);
  }

  async end(imageId: string): Promise<void> {
    await this.#db.deleteFrom('data_writes').where('image_id', '=', imageId).execute();
  }

  async leaveForCleanup(imageId: string): Promise<void> {
    await this.begin({ imageId, kind: 'cleanup', workerId: NO_WORKER });
  }

  async get(imageId: string): Promise<DataWrite | null> {
    const row = await this.#db
      .selectFrom('data_writes')
      .selectAll()
      .where('image_id', '=', imageId)
      .executeTakeFirst();
    return row ? writeOf(row) : null;
  }

  async list(): Promise<DataWrite[]> {
    const rows = await this.#db.selectFrom('data_writes').selectAll().execute();
    return rows.map(writeOf);
  }
}

/** Records the write, replacing the image's previous record (also inside a transaction). */
export async function recordWrite(
  db: Kysely<Tables> | Transaction<Tables>,
  write: DataWrite,
): Promise<void> {
  const row = {
    image_id: write.imageId,
    kind: write.kind,
    worker_id: write.workerId,
    started_at: new Date().toISOString(),
  };
  await db
    .insertInto('data_writes')
    .values(row)
    .onConflict((conflict) => conflict.column('image_id').doUpdateSet(row))
    .execute();
}
