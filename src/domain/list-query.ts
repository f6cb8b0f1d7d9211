/**
 * Parses the query string of `GET /v2/images` into a typed list request, with upstream Glance's
 * rules, order of checks and messages, and builds the `first` and `next` links of the answer.
 *
 * Upstream reads the query through a WebOb MultiDict. `limit`, `marker`, `member_status` and
 * `sort` are taken from their first occurrence, `tag`, `sort_key` and `sort_dir` collect every
 * occurrence, and every other parameter keeps its last value (the filters end up in a plain
 * dict). Upstream lets the spare copies of the first group leak into the filters, where they act
 * as property filters that match nothing; here they are ignored instead.
 */
import { InvalidInputError } from './errors.js';

export type SortKey =
  | 'name'
  | 'status'
  | 'container_format'
  | 'disk_format'
  | 'size'
  | 'id'
  | 'created_at'
  | 'updated_at';
export type SortDir = 'asc' | 'desc';
export type FilterOp = 'eq' | 'neq' | 'gt' | 'gte' | 'lt' | 'lte' | 'in';
export type ListVisibility = 'public' | 'private' | 'shared' | 'community' | 'all';
export type ListMemberStatus = 'accepted' | 'pending' | 'rejected' | 'all';

/**
 * A condition on an image column. `values` has one entry for every operator but `in`, whose
 * list may be empty (upstream then matches nothing). Integer columns carry canonical decimal
 * strings; `created_at`/`updated_at` carry UTC times as `YYYY-MM-DDTHH:MM:SS.sssZ`.
 */
export interface ColumnFilter {
  column: string;
  op: FilterOp;
  values: string[];
}

/** Equality on an additional property. */
export interface PropertyFilter {
  name: string;
  value: string;
}

export interface ImageListQuery {
  /** Clipped to `limitMax`; 0 is allowed. */
  limit: number;
  marker: string | null;
  /** The full order, with `created_at` and `id` appended as upstream's database layer does. */
  sort: Array<{ key: SortKey; dir: SortDir }>;
  /** `null` when the parameter is not given. */
  visibility: ListVisibility | null;
  memberStatus: ListMemberStatus;
  osHidden: boolean;
  /** Every tag must be present. */
  tags: string[];
  sizeMin: number | null;
  sizeMax: number | null;
  virtualSizeMin: number | null;
  virtualSizeMax: number | null;
  protected: boolean | null;
  columns: ColumnFilter[];
  properties: PropertyFilter[];
}

export interface ListQueryOptions {
  limitDefault: number;
  limitMax: number;
  /**
   * The configured formats. Upstream does not check `disk_format`/`container_format` filter
   * values against them (an unknown format just matches nothing), so neither does the parser.
   */
  diskFormats: string[];
  containerFormats: string[];
}

export const SORT_KEYS: readonly SortKey[] = [
  'name',
  'status',
  'container_format',
  'disk_format',
  'size',
  'id',
  'created_at',
  'updated_at',
];
const VISIBILITIES: readonly ListVisibility[] = [
  'community',
  'public',
  'private',
  'shared',
  'all',
];
const MEMBER_STATUSES: readonly ListMemberStatus[] = ['pending', 'accepted', 'rejected', 'all'];

/** Columns matched with `eq:` or `in:`. */
const LISTABLE_COLUMNS = new Set(['name', 'id', 'status', 'container_format', 'disk_format']);
const TIME_COLUMNS = new Set(['created_at', 'updated_at']);
const TIME_OPS: readonly FilterOp[] = ['gt', 'gte', 'lt', 'lte', 'eq', 'neq'];
const INTEGER_COLUMNS = new Set(['min_ram', 'min_disk', 'size', 'virtual_size']);
const STRING_COLUMNS = new Set(['owner', 'checksum', 'os_hash_algo', 'os_hash_value']);

/** Every column of upstream's images table, to tell a column range from a property name. */
const IMAGE_COLUMNS = new Set([
  ...LISTABLE_COLUMNS,
  ...TIME_COLUMNS,
  ...INTEGER_COLUMNS,
  ...STRING_COLUMNS,
  'visibility',
  'protected',
  'os_hidden',
  'deleted',
  'deleted_at',
]);
const RANGE_FIELDS = {
  size_min: 'sizeMin',
  size_max: 'sizeMax',
  virtual_size_min: 'virtualSizeMin',
  virtual_size_max: 'virtualSizeMax',
} as const;
type RangeField = (typeof RANGE_FIELDS)[keyof typeof RANGE_FIELDS];

// Upstream puts no bound on the query. These keep the parse, the SQL and the joins small:
// 100 parameters is far above what any client sends, 255 is the longest property name,
// 4096 covers any real value or `in:` list, 100 values per `in:` list, and 32 tag plus
// property filters (each one a join) stay well below SQLite's 64 tables per join.
const MAX_PARAMETERS = 100;
const MAX_KEY_LENGTH = 255;
const MAX_VALUE_LENGTH = 4096;
const MAX_IN_VALUES = 100;
const MAX_JOINED_FILTERS = 32;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

// What Python's `str.strip()` treats as whitespace (unlike `\s`, no U+FEFF). Its `int()` skips
// the same characters around a number except the ASCII separators U+001C..U+001F.
const PYTHON_SPACE =
  '[\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680' + '\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PYTHON_STRIP = new RegExp(`^${PYTHON_SPACE}+|${PYTHON_SPACE}+$`, 'g');
const INT_SPACE = PYTHON_SPACE.replace('\\x1c-\\x20', '\\x20');
const PYTHON_INT = new RegExp(`^${INT_SPACE}*([+-]?)([0-9]+(?:_[0-9]+)*)${INT_SPACE}*$`);

interface GroupedQuery {
  /** `limit`, `marker`, `member_status` and `sort`: first occurrence. */
  first: Map<string, string>;
  tags: string[];
  sortKeys: string[];
  sortDirs: string[];
  /** Every other key with its last value, in order of first appearance. */
  filters: Map<string, string>;
}

const FIRST_WINS = new Set(['limit', 'marker', 'member_status', 'sort']);

export function parseImageListQuery(
  pairs: Array<[string, string]>,
  opts: ListQueryOptions,
): ImageListQuery {
  checkBounds(pairs);
  const query = groupPairs(pairs);

  // Same order of checks as upstream: deserializer, then controller, then database filters.
  const visibility = takeVisibility(query.filters);
  rejectChangesSince(query.filters);
  const memberStatus = parseMemberStatus(query.first.get('member_status'));
  const limit = parseLimit(query.first.get('limit'), opts);
  const sort = parseSort(query);
  const osHidden = takeOsHidden(query.filters);
  const isProtected = takeProtected(query.filters);
  const filters = parseFilters(query.filters);
  checkJoinCount(query.tags.length + filters.properties.length);

  return {
    limit,
    marker: query.first.get('marker') ?? null,
    sort,
    visibility,
    memberStatus,
    osHidden,
    tags: query.tags,
    protected: isProtected,
    ...filters,
  };
}

// ---------------------------------------------------------------------------------------------
// Bounds and grouping

function checkBounds(pairs: Array<[string, string]>): void {
  if (pairs.length > MAX_PARAMETERS) {
    throw new InvalidInputError(
      `Too many query parameters; at most ${MAX_PARAMETERS} are allowed.`,
    );
  }

  for (const [key, value] of pairs) {
    if (!isCleanText(key) || !isCleanText(value)) {
      throw new InvalidInputError(
        'Query parameters can not contain NUL characters or unpaired surrogates.',
      );
    }
    if (codePointLength(key) > MAX_KEY_LENGTH) {
      throw new InvalidInputError(
        `Query parameter name is too long; at most ${MAX_KEY_LENGTH} characters are allowed.`,
      );
    }
    if (codePointLength(value) > MAX_VALUE_LENGTH) {
      throw new InvalidInputError(
        `Value of query parameter '${key}' is too long; ` +
          `at most ${MAX_VALUE_LENGTH} characters are allowed.`,
      );
    }
  }
}

/** False for text holding NUL or a surrogate that is not half of a pair. */
function isCleanText(text: string): boolean {
  return !/\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

function codePointLength(text: string): number {
  let length = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) length--;
  }
  return length;
}

function groupPairs(pairs: Array<[string, string]>): GroupedQuery {
  const query: GroupedQuery = {
    first: new Map(),
    tags: [],
    sortKeys: [],
    sortDirs: [],
    filters: new Map(),
  };

  for (const [key, value] of pairs) {
    if (FIRST_WINS.has(key)) {
      if (!query.first.has(key)) query.first.set(key, value);
    } else if (key === 'tag') {
      query.tags.push(pythonStrip(value));
    } else if (key === 'sort_key') {
      query.sortKeys.push(value);
    } else if (key === 'sort_dir') {
      query.sortDirs.push(value);
    } else {
      // Map.set keeps the first position and takes the last value, as a Python dict does.
      query.filters.set(key, value);
    }
  }
  return query;
}

function pythonStrip(text: string): string {
  return text.replace(PYTHON_STRIP, '');
}

// ---------------------------------------------------------------------------------------------
// Visibility, membership, limit and the boolean filters

function takeVisibility(filters: Map<string, string>): ListVisibility | null {
  const value = filters.get('visibility');
  if (value === undefined) return null;

  filters.delete('visibility');
  // Upstream skips the check for an empty value and then matches nothing; an empty value
  // can not be expressed here, so it is refused like any other unknown visibility.
  if (!isOneOf(value, VISIBILITIES)) {
    throw new InvalidInputError(`Invalid visibility value: ${value}`);
  }
  return value;
}

function rejectChangesSince(filters: Map<string, string>): void {
  if (filters.has('changes-since')) {
    throw new InvalidInputError('The "changes-since" filter is no longer available on v2.');
  }
}

function parseMemberStatus(value: string | undefined): ListMemberStatus {
  if (value === undefined) return 'accepted';

  if (!isOneOf(value, MEMBER_STATUSES)) {
    throw new InvalidInputError(`Invalid status: ${value}`);
  }
  return value;
}

function parseLimit(value: string | undefined, opts: ListQueryOptions): number {
  if (value === undefined) return Math.min(opts.limitDefault, opts.limitMax);

  const limit = parsePythonInt(value);
  if (limit === null) throw new InvalidInputError('limit param must be an integer');
  if (limit < 0n) throw new InvalidInputError('limit param must be positive');

  return limit > BigInt(opts.limitMax) ? opts.limitMax : Number(limit);
}

function takeOsHidden(filters: Map<string, string>): boolean {
  const raw = filters.get('os_hidden');
  filters.delete('os_hidden');

  // Upstream lower-cases this one value (and only this one) before checking it.
  const value = (raw ?? 'false').toLowerCase();
  if (value !== 'true' && value !== 'false') {
    throw new InvalidInputError(
      `Invalid value '${value}' for 'os_hidden' filter. Valid values are 'true' or 'false'.`,
    );
  }
  return value === 'true';
}

function takeProtected(filters: Map<string, string>): boolean | null {
  const value = filters.get('protected');
  if (value === undefined) return null;

  filters.delete('protected');
  if (value !== 'true' && value !== 'false') {
    throw new InvalidInputError(
      `Invalid value '${value}' for 'protected' filter. Valid values are 'true' or 'false'.`,
    );
  }
  return value === 'true';
}

// ---------------------------------------------------------------------------------------------
// Sorting

function parseSort(query: GroupedQuery): Array<{ key: SortKey; dir: SortDir }> {
  const sortParam = query.first.get('sort');
  const [keys, dirs] =
    sortParam === undefined
      ? parseClassicSort(query.sortKeys, query.sortDirs)
      : parseNewSort(sortParam, query);
  return completeSort(keys, dirs);
}

/** `sort=k1:dir,k2`: a key without a direction sorts descending. */
function parseNewSort(sortParam: string, query: GroupedQuery): [SortKey[], SortDir[]] {
  if (query.sortKeys.length > 0 || query.sortDirs.length > 0) {
    throw new InvalidInputError('Old and new sorting syntax cannot be combined');
  }

  const keys: SortKey[] = [];
  const dirs: SortDir[] = [];
  for (const item of pythonStrip(sortParam).split(',')) {
    const colon = item.indexOf(':');
    const key = colon < 0 ? item : item.slice(0, colon);
    // Upstream tests for a missing direction before stripping, so `sort=name: ,size` is refused.
    const dir = colon < 0 || colon === item.length - 1 ? 'desc' : item.slice(colon + 1);
    keys.push(validateSortKey(pythonStrip(key)));
    dirs.push(validateSortDir(pythonStrip(dir)));
  }
  return [keys, dirs];
}

/** Repeated `sort_key`/`sort_dir`: one direction applies to every key, more must pair up. */
function parseClassicSort(rawKeys: string[], rawDirs: string[]): [SortKey[], SortDir[]] {
  const keys = rawKeys.map((key) => validateSortKey(pythonStrip(key)));
  const dirs = rawDirs.map((dir) => validateSortDir(pythonStrip(dir)));

  if (dirs.length > 1 && dirs.length !== keys.length) {
    throw new InvalidInputError('Number of sort dirs does not match the number of sort keys');
  }
  return [keys, dirs];
}

/**
 * Upstream's database layer makes the order total: `created_at` and `id` are appended when
 * missing, in the single direction given if exactly one was given, else descending.
 */
function completeSort(keys: SortKey[], dirs: SortDir[]): Array<{ key: SortKey; dir: SortDir }> {
  const fullKeys: SortKey[] = keys.length > 0 ? [...keys] : ['created_at'];
  const givenDirs: SortDir[] = dirs.length > 0 ? dirs : ['desc'];
  const tieDir: SortDir = givenDirs.length === 1 ? (givenDirs[0] ?? 'desc') : 'desc';
  const fullDirs = givenDirs.length === 1 ? fullKeys.map(() => tieDir) : [...givenDirs];

  for (const key of ['created_at', 'id'] as const) {
    if (!fullKeys.includes(key)) {
      fullKeys.push(key);
      fullDirs.push(tieDir);
    }
  }
  return fullKeys.map((key, i) => ({ key, dir: fullDirs[i] ?? tieDir }));
}

function validateSortKey(key: string): SortKey {
  if (!isOneOf(key, SORT_KEYS)) {
    throw new InvalidInputError(
      `Invalid sort key: ${key}. It must be one of the following: ${SORT_KEYS.join(', ')}.`,
    );
  }
  return key;
}

function validateSortDir(dir: string): SortDir {
  if (dir !== 'asc' && dir !== 'desc') {
    throw new InvalidInputError(`Invalid sort direction: ${dir}`);
  }
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Filters

type FilterPart = Pick<
  ImageListQuery,
  'sizeMin' | 'sizeMax' | 'virtualSizeMin' | 'virtualSizeMax' | 'columns' | 'properties'
>;

function parseFilters(filters: Map<string, string>): FilterPart {
  const part: FilterPart = {
    sizeMin: null,
    sizeMax: null,
    virtualSizeMin: null,
    virtualSizeMax: null,
    columns: [],
    properties: [],
  };

  // Upstream always lists live images only and overwrites any `deleted` parameter.
  filters.delete('deleted');
  for (const [key, value] of filters) applyFilter(part, key, value);
  return part;
}

function applyFilter(part: FilterPart, key: string, value: string): void {
  const rangeField = rangeFieldOf(key);
  if (rangeField !== null) {
    part[rangeField] = parseRangeBound(value);
  } else if (TIME_COLUMNS.has(key)) {
    part.columns.push(parseTimeFilter(key, value));
  } else if (LISTABLE_COLUMNS.has(key)) {
    part.columns.push(parseListableFilter(key, value));
  } else if (INTEGER_COLUMNS.has(key)) {
    part.columns.push({ column: key, op: 'eq', values: [parseIntegerColumn(key, value)] });
  } else if (STRING_COLUMNS.has(key)) {
    part.columns.push({ column: key, op: 'eq', values: [value] });
  } else {
    part.properties.push({ name: key, value });
  }
}

/**
 * Upstream reads every key ending in `_min`/`_max` as a range on the column before the suffix.
 * Only the size ranges are supported here; a range on another column is refused, and a name
 * that is no column at all (a 500 upstream) is left to match an additional property.
 */
function rangeFieldOf(key: string): RangeField | null {
  if (key in RANGE_FIELDS) return RANGE_FIELDS[key as keyof typeof RANGE_FIELDS];

  const isRange = key.endsWith('_min') || key.endsWith('_max');
  if (isRange && IMAGE_COLUMNS.has(key.slice(0, -4))) {
    throw new InvalidInputError(
      `Unable to filter on a range of '${key.slice(0, -4)}'. ` +
        'Only size and virtual_size accept _min and _max.',
    );
  }
  return null;
}

function parseRangeBound(value: string): number {
  const bound = parsePythonInt(value);
  if (bound === null) {
    throw new InvalidInputError('Unable to filter on a range with a non-numeric value.');
  }
  if (bound < INT64_MIN || bound > INT64_MAX) {
    throw new InvalidInputError('Unable to filter on a range with an out of range value.');
  }

  // No image is anywhere near 2^53 bytes, so clamping keeps every comparison's outcome while
  // letting the bound live in a number.
  if (bound > SAFE_MAX) return Number.MAX_SAFE_INTEGER;
  if (bound < -SAFE_MAX) return -Number.MAX_SAFE_INTEGER;
  return Number(bound);
}

/** Upstream hands the raw text to the database; a bad integer must never get that far. */
function parseIntegerColumn(key: string, value: string): string {
  const number = parsePythonInt(value);
  if (number === null || number < INT64_MIN || number > INT64_MAX) {
    throw new InvalidInputError(
      `Invalid value '${value}' for parameter '${key}': ` +
        `must be an integer between ${INT64_MIN} and ${INT64_MAX}.`,
    );
  }
  return number.toString();
}

function parseTimeFilter(key: string, expression: string): ColumnFilter {
  const [op, threshold] = splitFilterOp(expression);

  // Upstream parses the time before it looks at the operator.
  const time = parseIsoTime(threshold);
  if (time === null) {
    throw new InvalidInputError(
      `Bad "${key}" query filter format. Use ISO 8601 DateTime notation.`,
    );
  }
  if (!isOneOf(op, TIME_OPS)) {
    throw new InvalidInputError('Unable to filter on a unknown operator.');
  }
  return { column: key, op, values: [time] };
}

function parseListableFilter(key: string, expression: string): ColumnFilter {
  const [op, operand] = splitFilterOp(expression);
  if (op === 'eq') return { column: key, op: 'eq', values: [operand] };
  if (op !== 'in') {
    throw new InvalidInputError(`Unable to filter by unknown operator '${op}'.`);
  }

  const values = splitInList(operand);
  if (values.length > MAX_IN_VALUES) {
    throw new InvalidInputError(
      `Too many values in the 'in' filter on '${key}'; at most ${MAX_IN_VALUES} are allowed.`,
    );
  }
  return { column: key, op: 'in', values };
}

/**
 * The operator is whatever precedes the first colon, so `name=foo:bar` names operator `foo`.
 * The exception is a value that is an ISO 8601 time as a whole (it has colons of its own): it
 * is compared for equality.
 */
function splitFilterOp(expression: string): [string, string] {
  const colon = expression.indexOf(':');
  if (colon < 0 || parseIsoTime(expression) !== null) return ['eq', expression];
  return [expression.slice(0, colon), expression.slice(colon + 1)];
}

function checkJoinCount(joins: number): void {
  if (joins > MAX_JOINED_FILTERS) {
    throw new InvalidInputError(
      `Too many tag and property filters; at most ${MAX_JOINED_FILTERS} are allowed.`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// `in:` lists

/**
 * Splits `a,"b, c",d` into its values. A quoted value may hold commas and `\"`; like upstream,
 * the backslash is kept in the value, so such a value only matches text that holds it.
 */
function splitInList(list: string): string[] {
  validateQuotes(list);

  const values: string[] = [];
  let position = 0;
  while (position < list.length) {
    const quoted = list.charAt(position) === '"' ? scanQuoted(list, position) : null;
    if (quoted !== null) {
      values.push(quoted.value);
      position = skipComma(list, quoted.end);
    } else if (list.charAt(position) === ',') {
      // A comma with nothing before it stands for an empty value.
      values.push('');
      position += 1;
    } else {
      const comma = list.indexOf(',', position);
      const end = comma < 0 ? list.length : comma;
      values.push(list.slice(position, end));
      position = skipComma(list, end);
    }
  }
  return values;
}

/** A quote opens a value only at the start or after a comma, and closes it only before one. */
function validateQuotes(list: string): void {
  let opening = true;
  for (let i = 0; i < list.length; i++) {
    if (list.charAt(i) !== '"' || (i > 0 && list.charAt(i - 1) === '\\')) continue;

    if (opening && i > 0 && list.charAt(i - 1) !== ',') {
      throw new InvalidInputError(
        `Invalid filter value ${list}. There is no comma before opening quotation mark.`,
      );
    }
    if (!opening && i + 1 !== list.length && list.charAt(i + 1) !== ',') {
      throw new InvalidInputError(
        `Invalid filter value ${list}. There is no comma after closing quotation mark.`,
      );
    }
    opening = !opening;
  }

  if (!opening) {
    throw new InvalidInputError(`Invalid filter value ${list}. The quote is not closed.`);
  }
}

/**
 * Reads a quoted value starting at `start`. A backslash takes the next character with it,
 * except a line feed (upstream's pattern uses `.`, which stops there). Null when no closing
 * quote is found: the text is then read as an unquoted value.
 */
function scanQuoted(list: string, start: number): { value: string; end: number } | null {
  let i = start + 1;
  while (i < list.length) {
    const char = list.charAt(i);
    if (char === '"') return { value: list.slice(start + 1, i), end: i + 1 };
    if (char === '\\') {
      if (i + 1 >= list.length || list.charAt(i + 1) === '\n') return null;
      i += 2;
    } else {
      i += 1;
    }
  }
  return null;
}

function skipComma(list: string, position: number): number {
  return list.charAt(position) === ',' ? position + 1 : position;
}

// ---------------------------------------------------------------------------------------------
// ISO 8601 times, as the `iso8601` package that upstream uses accepts them

// Year, then optionally a month (`-M`, `-MM`, or `MM` when more follows), then optionally a
// day with an optional time, whose minutes, seconds, fraction and zone are each optional.
// Python's `$` also matches before a final line feed, hence the `\n?`.
const ISO_TIME = new RegExp(
  [
    '^(?<year>[0-9]{4})',
    '(?:(?:-(?<monthDash>[0-9]{1,2})|(?<month>[0-9]{2})(?!\\n?$))',
    '(?:(?:-(?<dayDash>[0-9]{1,2})|(?<day>[0-9]{2}))',
    '(?:[ T](?<hour>[0-9]{2})(?::?(?<minute>[0-9]{2}))?',
    '(?::?(?<second>[0-9]{1,2})(?:[.,](?<fraction>[0-9]+))?)?',
    '(?<zone>Z|(?<zoneSign>[-+])(?<zoneHour>[0-9]{2}):?(?<zoneMinute>[0-9]{2})?)?',
    ')?)?)?\\n?$',
  ].join(''),
);

interface TimeFields {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  microsecond: number;
  offsetMinutes: number;
}

/** The time as UTC `YYYY-MM-DDTHH:MM:SS.sssZ`, or null when upstream would refuse it. */
function parseIsoTime(text: string): string | null {
  const groups = ISO_TIME.exec(text)?.groups;
  if (groups === undefined) return null;

  const fields = readTimeFields(groups);
  if (fields === null || !isValidDateTime(fields)) return null;

  return toUtcString(fields);
}

function readTimeFields(groups: Record<string, string | undefined>): TimeFields | null {
  const number = (name: string, fallback: number): number => {
    const value = groups[name];
    return value === undefined ? fallback : Number(value);
  };
  const microsecond = fractionToMicroseconds(groups['fraction'] ?? '');
  if (microsecond === null) return null;

  const sign = groups['zoneSign'] === '-' ? -1 : 1;
  return {
    year: number('year', 0),
    month: number('month', number('monthDash', 1)),
    day: number('day', number('dayDash', 1)),
    hour: number('hour', 0),
    minute: number('minute', 0),
    second: number('second', 0),
    microsecond,
    offsetMinutes: sign * (number('zoneHour', 0) * 60 + number('zoneMinute', 0)),
  };
}

/**
 * Upstream computes `int(Decimal("0.<digits>") * 1000000)`. The product is rounded to 28
 * significant digits first, which can carry into the microseconds when the digits after the
 * sixth are all nines; 1000000 is then not a valid microsecond.
 */
function fractionToMicroseconds(digits: string): number | null {
  const truncated = Number(digits.slice(0, 6).padEnd(6, '0'));
  const firstSignificant = digits.search(/[1-9]/);
  if (firstSignificant < 0) return truncated;

  const lastKept = firstSignificant + 27;
  const roundsUp =
    digits.length > lastKept + 1 &&
    /^9*$/.test(digits.slice(6, lastKept + 1)) &&
    digits.charAt(lastKept + 1) >= '5';
  const microsecond = roundsUp ? truncated + 1 : truncated;
  return microsecond < 1_000_000 ? microsecond : null;
}

function isValidDateTime(fields: TimeFields): boolean {
  const { year, month, day, hour, minute, second, offsetMinutes } = fields;
  return (
    year >= 1 &&
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth(year, month) &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    // Python's fixed offsets must lie strictly within one day.
    Math.abs(offsetMinutes) < 24 * 60
  );
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

/** Shifts to UTC; a result outside years 1..9999 is refused (upstream fails with a 500). */
function toUtcString(fields: TimeFields): string | null {
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not read years below 100 as 19xx.
  date.setUTCFullYear(fields.year, fields.month - 1, fields.day);
  date.setUTCHours(
    fields.hour,
    fields.minute,
    fields.second,
    Math.floor(fields.microsecond / 1000),
  );
  const utc = new Date(date.getTime() - fields.offsetMinutes * 60_000);

  const year = utc.getUTCFullYear();
  return year >= 1 && year <= 9999 ? utc.toISOString() : null;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function isOneOf<T extends string>(value: string, allowed: readonly T[]): value is T {
  return (allowed as readonly string[]).includes(value);
}

/**
 * Reads an integer the way Python's `int()` reads text: surrounding whitespace, an optional
 * sign, digits with single underscores between them. Only ASCII digits are taken (Python also
 * takes other scripts' decimal digits). Null when the text is not such an integer.
 */
function parsePythonInt(text: string): bigint | null {
  const match = PYTHON_INT.exec(text);
  if (match === null) return null;

  const magnitude = BigInt((match[2] ?? '').replace(/_/g, ''));
  return match[1] === '-' ? -magnitude : magnitude;
}

// ---------------------------------------------------------------------------------------------
// Links

/**
 * Builds the `first` link (marker `null`) or the `next` link of an image list. Every parameter
 * is kept in order, repeated ones included (upstream collapses them to one), and `marker` is
 * moved to the end with its new value, where upstream puts it.
 */
export function buildListLink(
  path: string,
  pairs: Array<[string, string]>,
  marker: string | null,
): string {
  const kept = pairs.filter(([key]) => key !== 'marker');
  if (marker !== null) kept.push(['marker', marker]);
  if (kept.length === 0) return path;

  const query = kept.map(([key, value]) => `${formEncode(key)}=${formEncode(value)}`);
  return `${path}?${query.join('&')}`;
}

const UTF8 = new TextEncoder();

/** Encodes as Python's `urlencode` does: `+` for spaces, only `A-Za-z0-9_.-~` left bare. */
function formEncode(text: string): string {
  let encoded = '';
  for (const byte of UTF8.encode(text)) {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9_.~-]/.test(char)) encoded += char;
    else if (byte === 0x20) encoded += '+';
    else encoded += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}
