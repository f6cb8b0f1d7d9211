/**
 * Builds the SQL of an image list: visibility scope, filters and keyset pagination.
 *
 * Pages are found by keyset (rows after the marker's sort tuple), never by OFFSET, so page
 * 10,000 costs what page 1 costs. Nullable sort columns are compared through COALESCE, the
 * way upstream orders NULLs ('' for text, 0 for numbers), in both ORDER BY and the keyset.
 */
import { sql, type Expression, type ExpressionBuilder, type SqlBool } from 'kysely';

import type { ColumnFilter, ImageListQuery, SortKey } from '../../domain/list-query.js';
import type { ListScope } from '../repository.js';
import type { Tables } from './tables.js';

type Builder = ExpressionBuilder<Tables, 'images'>;
type Condition = Expression<SqlBool>;

// Literal conditions: SQLite cannot bind JavaScript booleans as parameters.
const ALWAYS = sql<SqlBool>`1 = 1`;
const NEVER = sql<SqlBool>`1 = 0`;

const INTEGER_COLUMNS = new Set(['min_ram', 'min_disk', 'size', 'virtual_size']);
const NULLABLE_TEXT_SORT = new Set(['name', 'container_format', 'disk_format']);

const OPERATORS = {
  eq: '=',
  neq: '<>',
  gt: '>',
  gte: '>=',
  lt: '<',
  lte: '<=',
} as const;

/** The expression a sort key orders by, on the images table or one of its aliases. */
export function sortExpression(key: SortKey, table = 'images'): Expression<unknown> {
  const column = sql.ref(`${table}.${key}`);
  if (NULLABLE_TEXT_SORT.has(key)) return sql`coalesce(${column}, '')`;
  if (key === 'size') return sql`coalesce(${column}, 0)`;
  return column;
}

/**
 * A scalar subquery reading `expressions` off the live marker image: both engines run it
 * once per statement and compare the index against its result, so a page after a marker is
 * one statement. A missing marker reads as NULL, which no row compares beyond.
 */
export function fromMarker(
  markerId: string,
  expressions: readonly Expression<unknown>[],
): Expression<unknown> {
  return sql`(select ${sql.join(expressions)} from images as m
    where m.id = ${markerId} and m.deleted = ${sql.lit(0)})`;
}

export function whereListed(
  eb: Builder,
  query: ImageListQuery,
  scope: ListScope,
  markerId: string | null,
): Condition {
  // Constants are literals, not parameters: PostgreSQL then plans a named statement with
  // them known (a generic plan cannot see that deleted = 0 matches nearly every row).
  const conditions: Condition[] = [
    eb('images.deleted', '=', sql.lit(0)),
    eb('images.status', '<>', sql.lit('killed')),
    eb('images.os_hidden', '=', sql.lit(query.osHidden ? 1 : 0)),
    inScope(eb, query, scope),
    ...filterConditions(eb, query),
  ];
  if (markerId !== null) conditions.push(afterMarker(eb, query, markerId));
  return eb.and(conditions);
}

function membership(eb: Builder, projectId: string, status: string): Condition {
  let members = eb
    .selectFrom('image_members as m')
    .select(sql.lit(1).as('one'))
    .whereRef('m.image_id', '=', 'images.id')
    .where('m.member', '=', projectId)
    .where('m.deleted', '=', 0);
  if (status !== 'all') members = members.where('m.status', '=', status);
  return eb.exists(members);
}

/** Which images the caller's project may list, following upstream's visibility rules. */
function inScope(eb: Builder, query: ImageListQuery, scope: ListScope): Condition {
  const visibility = query.visibility;
  const own = (): Condition =>
    scope.projectId === null ? NEVER : eb('images.owner', '=', scope.projectId);
  const is = (value: string): Condition => eb('images.visibility', '=', sql.lit(value));

  if (scope.isAdmin) {
    if (visibility === 'all') return ALWAYS;
    if (visibility !== null) return is(visibility);
    return eb.or([eb('images.visibility', '<>', sql.lit('community')), own()]);
  }

  const sharedWithMe = (): Condition =>
    scope.projectId === null
      ? NEVER
      : eb.and([is('shared'), membership(eb, scope.projectId, query.memberStatus)]);

  switch (visibility) {
    case 'public':
    case 'community':
      return is(visibility);
    case 'private':
      return eb.and([is('private'), own()]);
    case 'shared':
      return eb.or([eb.and([is('shared'), own()]), sharedWithMe()]);
    case 'all':
      return eb.or([is('public'), is('community'), own(), sharedWithMe()]);
    case null:
      return eb.or([is('public'), own(), sharedWithMe()]);
  }
}

function filterConditions(eb: Builder, query: ImageListQuery): Condition[] {
  const conditions = query.columns.map((filter) => columnCondition(eb, filter));

  if (query.sizeMin !== null) conditions.push(eb('images.size', '>=', query.sizeMin));
  if (query.sizeMax !== null) conditions.push(eb('images.size', '<=', query.sizeMax));
  if (query.virtualSizeMin !== null) {
    conditions.push(eb('images.virtual_size', '>=', query.virtualSizeMin));
  }
  if (query.virtualSizeMax !== null) {
    conditions.push(eb('images.virtual_size', '<=', query.virtualSizeMax));
  }
  if (query.protected !== null) {
    conditions.push(eb('images.protected', '=', query.protected ? 1 : 0));
  }
  for (const tag of query.tags) {
    const tagged = eb
      .selectFrom('image_tags as t')
      .select(sql.lit(1).as('one'))
      .whereRef('t.image_id', '=', 'images.id')
      .where('t.value', '=', tag);
    conditions.push(eb.exists(tagged));
  }
  for (const property of query.properties) {
    const matching = eb
      .selectFrom('image_properties as p')
      .select(sql.lit(1).as('one'))
      .whereRef('p.image_id', '=', 'images.id')
      .where('p.name', '=', property.name)
      .where('p.value', '=', property.value);
    conditions.push(eb.exists(matching));
  }
  return conditions;
}

function columnCondition(eb: Builder, filter: ColumnFilter): Condition {
  const column = sql.ref<unknown>(`images.${filter.column}`);
  const values = filter.values.map((value) =>
    INTEGER_COLUMNS.has(filter.column) ? Number(value) : value,
  );
  if (filter.op === 'in') return values.length === 0 ? NEVER : eb(column, 'in', values);
  return eb(column, OPERATORS[filter.op], values[0]);
}

/** Rows strictly after the marker in the requested order (a lexicographic tuple compare). */
function afterMarker(eb: Builder, query: ImageListQuery, markerId: string): Condition {
  const markerValue = (key: SortKey) => fromMarker(markerId, [sortExpression(key, 'm')]);
  const [first] = query.sort;
  if (first && query.sort.every(({ dir }) => dir === first.dir)) {
    // One direction: a row-value comparison, which both engines turn into an index range
    // scan, so a page deep in the list costs what the first page costs.
    const columns = sql.join(query.sort.map(({ key }) => sortExpression(key)));
    const values = fromMarker(
      markerId,
      query.sort.map(({ key }) => sortExpression(key, 'm')),
    );
    const beyond = first.dir === 'asc' ? sql`>` : sql`<`;
    return sql<SqlBool>`(${columns}) ${beyond} ${values}`;
  }

  const alternatives = query.sort.map((current, index) => {
    const ties = query.sort
      .slice(0, index)
      .map((earlier) => eb(sortExpression(earlier.key), '=', markerValue(earlier.key)));
    const beyond = eb(
      sortExpression(current.key),
      current.dir === 'asc' ? '>' : '<',
      markerValue(current.key),
    );
    return eb.and([...ties, beyond]);
  });
  return eb.or(alternatives);
}
