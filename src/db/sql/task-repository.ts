import type { Kysely, Selectable } from 'kysely';

import type { TaskRecord, TaskStatus, TaskType } from '../../domain/task.js';
import type { TaskChanges, TaskListQuery, TaskRepository } from '../repository.js';
import type { DatabaseDialect } from './dialects/dialect.js';
import type { Tables, TasksTable } from './tables.js';

export class SqlTaskRepository implements TaskRepository {
  readonly #db: Kysely<Tables>;
  readonly #dialect: DatabaseDialect;

  constructor(db: Kysely<Tables>, dialect: DatabaseDialect) {
    this.#db = db;
    this.#dialect = dialect;
  }

  async create(task: TaskRecord): Promise<void> {
    await this.#db
      .insertInto('tasks')
      .values({
        ...task,
        input: JSON.stringify(task.input),
        result: task.result === null ? null : JSON.stringify(task.result),
        deleted: 0,
        deleted_at: null,
        worker_id: null,
        attempts: 0,
      })
      .execute();
  }

  async get(id: string): Promise<TaskRecord | null> {
    const row = await this.#live().where('id', '=', id).executeTakeFirst();
    return row ? toTask(row) : null;
  }

  async listForImage(imageId: string, owner: string | null): Promise<TaskRecord[]> {
    let query = this.#unexpired().where('image_id', '=', imageId);
    if (owner !== null) query = query.where('owner', '=', owner);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').execute();
    return rows.map(toTask);
  }

  async list(query: TaskListQuery): Promise<TaskRecord[]> {
    let select = this.#unexpired();
    if (query.status) select = select.where('status', '=', query.status);
    if (query.type) select = select.where('type', '=', query.type);
    if (query.marker) {
      const marker = await this.#live().where('id', '=', query.marker).executeTakeFirst();
      if (marker) {
        const beyond = query.sortDir === 'asc' ? '>' : '<';
        const key = query.sortKey;
        select = select.where((eb) =>
          eb.or([
            eb(key, beyond, marker[key]),
            eb.and([eb(key, '=', marker[key]), eb('id', beyond, marker.id)]),
          ]),
        );
      }
    }
    const rows = await select
      .orderBy(query.sortKey, query.sortDir)
      .orderBy('id', query.sortDir)
      .limit(query.limit)
      .execute();
    return rows.map(toTask);
  }

  async claimNext(workerId: string): Promise<TaskRecord | null> {
    return this.#db.transaction().execute(async (trx) => {
      let oldest = trx
        .selectFrom('tasks')
        .select('id')
        .where('status', '=', 'pending')
        .where('deleted', '=', 0)
        .orderBy('created_at')
        .limit(1);
      // Several processes share the queue: each skips rows another one is claiming.
      if (this.#dialect.name === 'postgres') oldest = oldest.forUpdate().skipLocked();
      const candidate = await oldest.executeTakeFirst();
      if (!candidate) return null;

      const row = await trx
        .updateTable('tasks')
        .set((eb) => ({
          status: 'processing',
          worker_id: workerId,
          attempts: eb('attempts', '+', 1),
          updated_at: new Date().toISOString(),
        }))
        .where('id', '=', candidate.id)
        .where('status', '=', 'pending')
        .returningAll()
        .executeTakeFirst();
      return row ? toTask(row) : null;
    });
  }

  async update(id: string, expected: TaskStatus, changes: TaskChanges): Promise<boolean> {
    const values: Partial<Selectable<TasksTable>> = {
      updated_at: changes.updated_at ?? new Date().toISOString(),
    };
    if (changes.status !== undefined) values.status = changes.status;
    if (changes.message !== undefined) values.message = changes.message;
    if (changes.expires_at !== undefined) values.expires_at = changes.expires_at;
    if (changes.result !== undefined) {
      values.result = changes.result === null ? null : JSON.stringify(changes.result);
    }
    if (changes.status === 'success' || changes.status === 'failure') values.worker_id = null;

    const result = await this.#db
      .updateTable('tasks')
      .set(values)
      .where('id', '=', id)
      .where('status', '=', expected)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  async processing() {
    const rows = await this.#db
      .selectFrom('tasks')
      .select(['id', 'worker_id', 'attempts'])
      .where('status', '=', 'processing')
      .where('deleted', '=', 0)
      .execute();
    return rows.map((row) => ({ id: row.id, workerId: row.worker_id, attempts: row.attempts }));
  }

  async release(id: string): Promise<void> {
    await this.#db
      .updateTable('tasks')
      .set({ status: 'pending', worker_id: null, updated_at: new Date().toISOString() })
      .where('id', '=', id)
      .where('status', '=', 'processing')
      .execute();
  }

  async purgeExpired(now: string): Promise<number> {
    const result = await this.#db
      .updateTable('tasks')
      .set({ deleted: 1, deleted_at: now })
      .where('deleted', '=', 0)
      .where('expires_at', '<', now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  /**
   * Live tasks not past their expiry. Listings leave expired tasks out before the runner
   * purges them, as upstream purges them on every listing.
   */
  #unexpired() {
    const now = new Date().toISOString();
    return this.#live().where((eb) =>
      eb.or([eb('expires_at', 'is', null), eb('expires_at', '>=', now)]),
    );
  }

  #live() {
    return this.#db.selectFrom('tasks').selectAll().where('deleted', '=', 0);
  }
}

function toTask(row: Selectable<TasksTable>): TaskRecord {
  return {
    id: row.id,
    type: row.type as TaskType,
    status: row.status as TaskStatus,
    owner: row.owner,
    image_id: row.image_id,
    request_id: row.request_id,
    user_id: row.user_id,
    input: JSON.parse(row.input) as Record<string, unknown>,
    result: row.result === null ? null : (JSON.parse(row.result) as Record<string, unknown>),
    message: row.message,
    expires_at: row.expires_at,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}
