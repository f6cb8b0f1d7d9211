import { sql, type CompiledQuery, type Kysely, type Transaction } from 'kysely';

import { ConflictError } from '../../domain/errors.js';
import type { ImageLocation, ImageRecord, ImageStatus } from '../../domain/image.js';
import type { ImageListQuery } from '../../domain/list-query.js';
import type {
  DataWrite,
  ImageRepository,
  ListedPage,
  ListScope,
  ProjectUsage,
  UsageCheck,
} from '../repository.js';
import type { DatabaseDialect } from './dialects/dialect.js';
import { CompiledQueryCache } from './compiled-query-cache.js';
import { fromMarker, sortExpression, whereListed } from './image-list.js';
import { changedColumns, toColumns, toRecord, type ImageRow } from './image-rows.js';
import type { Tables } from './tables.js';
import { recordWrite } from './write-registry.js';

type Executor = Kysely<Tables> | Transaction<Tables>;

/** Stands for the id in a query compiled once; replaced by the real id at each call. */
const ID_PARAMETER = '\u0000image id\u0000';

const LIST_QUERY_CACHE_SIZE = 256;

/**
 * Stands for the marker id in a list query compiled once. An object, not a string, so that no
 * value a client sends can be mistaken for it.
 */
const MARKER_ID = { placeholderFor: 'marker id' } as unknown as string;

/** A listed row: the image, its details, and the marker's columns read along with it. */
type ListRow = ImageRow &
  DetailRows & { marker_owner: string | null; marker_visibility: string | null };

export class SqlImageRepository implements ImageRepository {
  readonly #db: Kysely<Tables>;
  readonly #dialect: DatabaseDialect;
  /**
   * The query of get(), compiled once: it is the hottest read, and building and compiling a
   * Kysely query costs about as much as running it.
   */
  readonly #getQuery: CompiledQuery<ImageRow & DetailRows>;
  readonly #columnsQuery: CompiledQuery<ImageRow>;
  /**
   * Compiled list queries by everything that shapes their SQL. Building and compiling a list
   * query costs a tenth of serving a page; the same listings are asked for again and again.
   */
  readonly #listQueries = new CompiledQueryCache<ListRow>(LIST_QUERY_CACHE_SIZE);

  constructor(db: Kysely<Tables>, dialect: DatabaseDialect) {
    this.#db = db;
    this.#dialect = dialect;
    this.#getQuery = this.#selectWithDetails(true)
      .where('images.id', '=', ID_PARAMETER)
      .where('images.deleted', '=', 0)
      .compile();
    this.#columnsQuery = this.#db
      .selectFrom('images')
      .selectAll()
      .where('images.id', '=', ID_PARAMETER)
      .where('images.deleted', '=', 0)
      .compile();
  }

  async create(image: ImageRecord): Promise<void> {
    // An image without tags or properties is one row: one statement, no transaction needed.
    const single =
      image.tags.length === 0 &&
      image.locations.length === 0 &&
      Object.keys(image.properties).length === 0;
    await this.#inserting(image, () =>
      single
        ? insertImage(this.#db, image)
        : this.#db.transaction().execute((trx) => insertImage(trx, image)),
    );
  }

  async createChecked(image: ImageRecord, projectId: string, check: UsageCheck): Promise<void> {
    await this.#inserting(image, () =>
      this.#underQuotaLock(projectId, async (trx) => {
        check(await usageOf(trx, projectId));
        await insertImage(trx, image);
      }),
    );
  }

  async #inserting(image: ImageRecord, insert: () => Promise<void>): Promise<void> {
    try {
      await insert();
    } catch (error) {
      if (this.#dialect.isUniqueViolation(error)) {
        throw new ConflictError(`An image with identifier ${image.id} already exists`, {
          cause: error,
        });
      }
      throw error;
    }
  }

  async get(id: string): Promise<ImageRecord | null> {
    const row = await this.#byId(this.#getQuery, id);
    return row ? withDetails(row) : null;
  }

  async getColumns(id: string): Promise<ImageRecord | null> {
    const row = await this.#byId(this.#columnsQuery, id);
    return row ? toRecord(row, { tags: [], properties: {}, locations: [] }) : null;
  }

  /** Runs a query compiled once with ID_PARAMETER, for one image id. */
  async #byId<R>(compiled: CompiledQuery<R>, id: string): Promise<R | undefined> {
    const parameters = compiled.parameters.map((value) => (value === ID_PARAMETER ? id : value));
    const query: CompiledQuery<R> = { ...compiled, parameters };
    const { rows } = await this.#db.executeQuery(query);
    return rows[0];
  }

  async list(
    query: ImageListQuery,
    scope: ListScope,
    markerId: string | null,
    options: { readonly withLocations?: boolean } = {},
  ): Promise<ListedPage> {
    if (query.limit === 0) return { images: [], marker: null };

    const withLocations = options.withLocations ?? false;
    const shape = JSON.stringify([
      { ...query, marker: null },
      scope,
      markerId !== null,
      withLocations,
    ]);
    const compiled = this.#listQueries.get(shape, () =>
      this.#compileList(query, scope, markerId !== null, withLocations),
    );
    const parameters =
      markerId === null
        ? compiled.parameters
        : compiled.parameters.map((value) => (value === MARKER_ID ? markerId : value));

    const page: typeof compiled = { ...compiled, parameters };
    const { rows } = await this.#db.executeQuery(page);
    const [first] = rows;
    const marker =
      markerId !== null && first
        ? {
            id: markerId,
            owner: first.marker_owner,
            visibility: first.marker_visibility as ImageRecord['visibility'],
          }
        : null;
    return { images: rows.map(withDetails), marker };
  }

  /**
   * The query of a page. The marker's id is stood for by a placeholder, so one compiled query
   * serves every page of a listing; its owner and visibility come with every row.
   */
  #compileList(
    query: ImageListQuery,
    scope: ListScope,
    afterMarker: boolean,
    withLocations: boolean,
  ): CompiledQuery<ListRow> {
    const markerId = afterMarker ? MARKER_ID : null;
    let select = this.#selectWithDetails(withLocations)
      .select(() => [
        markerColumn(markerId, 'owner').as('marker_owner'),
        markerColumn(markerId, 'visibility').as('marker_visibility'),
      ])
      .where((eb) => whereListed(eb, query, scope, markerId));
    for (const { key, dir } of query.sort) select = select.orderBy(sortExpression(key), dir);

    // A literal limit lets PostgreSQL plan a named statement for a page, not for any size.
    return select.limit(sql.lit(query.limit)).compile();
  }

  /**
   * Image rows with their tags, properties and (optionally) locations as JSON columns, so
   * that an image or a page of images is one query.
   */
  #selectWithDetails(withLocations: boolean) {
    const json = this.#dialect;
    const select = this.#db
      .selectFrom('images')
      .selectAll('images')
      .select((eb) => [
        json
          .jsonArrayFrom(
            eb
              .selectFrom('image_properties as p')
              .select(['p.name', 'p.value'])
              .whereRef('p.image_id', '=', 'images.id'),
          )
          .as('property_rows'),
        json
          .jsonArrayFrom(
            eb
              .selectFrom('image_tags as t')
              .select('t.value')
              .whereRef('t.image_id', '=', 'images.id'),
          )
          .as('tag_rows'),
      ]);
    if (!withLocations) return select;
    return select.select((eb) =>
      json
        .jsonArrayFrom(
          eb
            .selectFrom('image_locations as l')
            .select(['l.url', 'l.metadata', 'l.status'])
            .whereRef('l.image_id', '=', 'images.id')
            .orderBy('l.position'),
        )
        .as('location_rows'),
    );
  }

  async save(previous: ImageRecord, next: ImageRecord, write?: DataWrite): Promise<boolean> {
    // A change to the image row alone is one statement, atomic by itself: no transaction,
    // which on PostgreSQL saves two round trips.
    if (!write && onlyColumnsChanged(previous, next)) {
      return updateImage(this.#db, previous, next);
    }
    return this.#db.transaction().execute((trx) => updateWriting(trx, previous, next, write));
  }

  async saveChecked(
    previous: ImageRecord,
    next: ImageRecord,
    projectId: string,
    check: UsageCheck,
    write?: DataWrite,
  ): Promise<boolean> {
    return this.#underQuotaLock(projectId, async (trx) => {
      check(await usageOf(trx, projectId));
      return updateWriting(trx, previous, next, write);
    });
  }

  /** The row stays (its id is never reused); its tags, properties and locations go. */
  async delete(id: string, status: Extract<ImageStatus, 'deleted' | 'pending_delete'>) {
    const now = new Date().toISOString();
    const marked = { status, deleted: 1, deleted_at: now, updated_at: now };
    if (this.#dialect.name === 'postgres') {
      // One statement, and so one round trip: PostgreSQL runs deletes in a WITH clause.
      await this.#db
        .with('p', (db) => db.deleteFrom('image_properties').where('image_id', '=', id))
        .with('t', (db) => db.deleteFrom('image_tags').where('image_id', '=', id))
        .with('l', (db) => db.deleteFrom('image_locations').where('image_id', '=', id))
        .updateTable('images')
        .set(marked)
        .where('id', '=', id)
        .execute();
      return;
    }
    await this.#db.transaction().execute(async (trx) => {
      await trx.updateTable('images').set(marked).where('id', '=', id).execute();
      await trx.deleteFrom('image_properties').where('image_id', '=', id).execute();
      await trx.deleteFrom('image_tags').where('image_id', '=', id).execute();
      await trx.deleteFrom('image_locations').where('image_id', '=', id).execute();
    });
  }

  async setPropertyIfAbsent(imageId: string, name: string, value: string): Promise<boolean> {
    const result = await this.#db
      .insertInto('image_properties')
      .values({ image_id: imageId, name, value })
      .onConflict((conflict) => conflict.columns(['image_id', 'name']).doNothing())
      .executeTakeFirst();
    return (result.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  async removePropertyIfEquals(imageId: string, name: string, value: string): Promise<void> {
    await this.#db
      .deleteFrom('image_properties')
      .where('image_id', '=', imageId)
      .where('name', '=', name)
      .where('value', '=', value)
      .execute();
  }

  async isMember(imageId: string, projectId: string): Promise<boolean> {
    const row = await this.#db
      .selectFrom('image_members')
      .select('id')
      .where('image_id', '=', imageId)
      .where('member', '=', projectId)
      .where('deleted', '=', 0)
      .executeTakeFirst();
    return row !== undefined;
  }

  async usage(projectId: string): Promise<ProjectUsage> {
    return usageOf(this.#db, projectId);
  }

  /**
   * Runs `work` in a transaction that holds the project's quota lock until it commits, so a
   * usage check and the write it allows cannot interleave with another checked write of the
   * same project, in this process or another. A check that reads usage and then writes in
   * separate steps would let N racing requests all see room for one more.
   *
   * PostgreSQL: a transaction-scoped advisory lock keyed by the project (in a key space of
   * its own). Under READ COMMITTED each statement sees what was committed before it, so the
   * usage read after taking the lock includes the writes of the previous holder.
   * SQLite: BEGIN IMMEDIATE takes the database's write lock up front, so every checked write
   * runs alone among writers (this process already funnels queries through one connection).
   * `work` must use only the executor it is given.
   */
  async #underQuotaLock<T>(projectId: string, work: (trx: Executor) => Promise<T>): Promise<T> {
    if (this.#dialect.name === 'postgres') {
      return this.#db.transaction().execute(async (trx) => {
        const key = sql`hashtext(${projectId})`;
        await sql`select pg_advisory_xact_lock(${sql.lit(QUOTA_LOCK_SPACE)}, ${key})`.execute(trx);
        return work(trx);
      });
    }
    return this.#db.connection().execute(async (connection) => {
      await sql`begin immediate`.execute(connection);
      try {
        const result = await work(connection);
        await sql`commit`.execute(connection);
        return result;
      } catch (error) {
        await sql`rollback`.execute(connection);
        throw error;
      }
    });
  }
}

/** First key of the advisory locks guarding quota checks, apart from any other lock user. */
const QUOTA_LOCK_SPACE = 0x676c71;

/** Statuses of images that no longer count against any quota. */
const GONE = sql.join(['killed', 'deleted', 'pending_delete'].map((status) => sql.lit(status)));

/**
 * The four usage figures in one pass over the project's images. An image being copied to
 * another store carries a non-empty os_glance_importing_to_stores property.
 */
async function usageOf(db: Executor, projectId: string): Promise<ProjectUsage> {
  const copying = sql`exists (select 1 from image_properties p where p.image_id = i.id
    and p.name = 'os_glance_importing_to_stores' and p.value <> '')`;
  const liveLocations = sql`(select count(*) from image_locations l
    where l.image_id = i.id and l.status <> 'deleted')`;
  const { rows } = await sql<Record<keyof ProjectUsage, number | string | null>>`
    select
      count(*) as images,
      sum(case when i.status in ('saving', 'uploading', 'importing') or ${copying}
        then 1 else 0 end) as uploading,
      sum(case when i.size > 0 and (i.status in ('uploading', 'importing') or ${copying})
        then i.size else 0 end) as "stagedBytes",
      sum(case when i.size > 0 then i.size * ${liveLocations} else 0 end) as "storedBytes"
    from images i
    where i.owner = ${projectId} and i.deleted = 0 and i.status not in (${GONE})
  `.execute(db);
  // PostgreSQL sums bigints as numeric, which node-postgres returns as text.
  const row = rows[0];
  return {
    storedBytes: Number(row?.storedBytes ?? 0),
    stagedBytes: Number(row?.stagedBytes ?? 0),
    images: Number(row?.images ?? 0),
    uploading: Number(row?.uploading ?? 0),
  };
}

async function insertImage(db: Executor, image: ImageRecord): Promise<void> {
  await db
    .insertInto('images')
    .values({ ...toColumns(image), deleted: 0, deleted_at: null })
    .execute();
  await insertProperties(db, image.id, Object.entries(image.properties));
  await insertTags(db, image.id, image.tags);
  await saveLocations(db, { ...image, locations: [] }, image);
}

/** Whether tags, properties and locations are all unchanged. */
function onlyColumnsChanged(previous: ImageRecord, next: ImageRecord): boolean {
  const sameTags =
    previous.tags.length === next.tags.length &&
    previous.tags.every((tag) => next.tags.includes(tag));
  const names = Object.keys(next.properties);
  const sameProperties =
    names.length === Object.keys(previous.properties).length &&
    names.every((name) => previous.properties[name] === next.properties[name]);
  const sameLocations = JSON.stringify(previous.locations) === JSON.stringify(next.locations);
  return sameTags && sameProperties && sameLocations;
}

/** updateImage, and when it succeeds, the record of the data write it starts, if any. */
async function updateWriting(
  trx: Executor,
  previous: ImageRecord,
  next: ImageRecord,
  write: DataWrite | undefined,
): Promise<boolean> {
  const saved = await updateImage(trx, previous, next);
  if (saved && write) await recordWrite(trx, write);
  return saved;
}

/** The conditional update behind `save`; false when the image is gone or its status moved. */
async function updateImage(db: Executor, previous: ImageRecord, next: ImageRecord) {
  let update = db
    .updateTable('images')
    // updated_at is always written, so the statement has a SET clause even when only
    // tags, properties or locations changed within the same millisecond.
    .set({ ...changedColumns(previous, next), updated_at: next.updated_at })
    .where('id', '=', next.id)
    .where('deleted', '=', 0);
  if (previous.status !== next.status) update = update.where('status', '=', previous.status);

  const result = await update.executeTakeFirst();
  if (result.numUpdatedRows === 0n) return false;

  await saveProperties(db, previous, next);
  await saveTags(db, previous, next);
  await saveLocations(db, previous, next);
  return true;
}

async function insertProperties(
  db: Executor,
  imageId: string,
  entries: Array<[string, string]>,
): Promise<void> {
  if (entries.length === 0) return;
  await db
    .insertInto('image_properties')
    .values(entries.map(([name, value]) => ({ image_id: imageId, name, value })))
    .onConflict((conflict) =>
      conflict
        .columns(['image_id', 'name'])
        .doUpdateSet((eb) => ({ value: eb.ref('excluded.value') })),
    )
    .execute();
}

async function insertTags(db: Executor, imageId: string, tags: string[]): Promise<void> {
  if (tags.length === 0) return;
  await db
    .insertInto('image_tags')
    .values(tags.map((value) => ({ image_id: imageId, value })))
    .onConflict((conflict) => conflict.doNothing())
    .execute();
}

async function saveProperties(db: Executor, previous: ImageRecord, next: ImageRecord) {
  const removed = Object.keys(previous.properties).filter((name) => !(name in next.properties));
  const changed = Object.entries(next.properties).filter(
    ([name, value]) => previous.properties[name] !== value,
  );
  if (removed.length > 0) {
    await db
      .deleteFrom('image_properties')
      .where('image_id', '=', next.id)
      .where('name', 'in', removed)
      .execute();
  }
  await insertProperties(db, next.id, changed);
}

async function saveTags(db: Executor, previous: ImageRecord, next: ImageRecord) {
  const removed = previous.tags.filter((tag) => !next.tags.includes(tag));
  const added = next.tags.filter((tag) => !previous.tags.includes(tag));
  if (removed.length > 0) {
    await db
      .deleteFrom('image_tags')
      .where('image_id', '=', next.id)
      .where('value', 'in', removed)
      .execute();
  }
  await insertTags(db, next.id, added);
}

/** Locations are few and ordered; rewrite the list whenever it changed. */
async function saveLocations(db: Executor, previous: ImageRecord, next: ImageRecord) {
  if (JSON.stringify(previous.locations) === JSON.stringify(next.locations)) return;

  await db.deleteFrom('image_locations').where('image_id', '=', next.id).execute();
  if (next.locations.length === 0) return;
  await db
    .insertInto('image_locations')
    .values(
      next.locations.map((location, position) => ({
        image_id: next.id,
        position,
        url: location.url,
        metadata: JSON.stringify(location.metadata),
        status: location.status,
        created_at: next.updated_at,
      })),
    )
    .execute();
}

type DetailRows = {
  property_rows: unknown;
  tag_rows: unknown;
  location_rows?: unknown;
};

/** SQLite returns the JSON columns as text, PostgreSQL as parsed values. */
function parsed<T>(value: unknown): T[] {
  const rows = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  return Array.isArray(rows) ? (rows as T[]) : [];
}

function withDetails(row: ImageRow & DetailRows): ImageRecord {
  const properties: Record<string, string> = {};
  for (const { name, value } of parsed<{ name: string; value: string }>(row.property_rows)) {
    properties[name] = value;
  }
  const rows = parsed<{ url: string; metadata: string; status: string }>(row.location_rows);
  const locations = rows.map((location) => ({
    url: location.url,
    metadata: JSON.parse(location.metadata) as Record<string, unknown>,
    status: location.status as ImageLocation['status'],
  }));
  return toRecord(row, {
    tags: parsed<{ value: string }>(row.tag_rows).map((tag) => tag.value),
    properties,
    locations,
  });
}

/** A column of the marker image, or NULL without a marker. */
function markerColumn(markerId: string | null, column: 'owner' | 'visibility') {
  if (markerId === null) return sql<string | null>`null`;
  return sql<string | null>`${fromMarker(markerId, [sql.ref(`m.${column}`)])}`;
}
