/**
 * Turns client documents (create bodies and JSON-patch documents) into validated changes, and
 * applies changes to an image, with upstream Glance's rules, order of checks and messages.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { SCHEMA_OPTIONS } from './schema-options.js';

import { ForbiddenError, InvalidInputError } from './errors.js';
import { WRITABLE_CORE_FIELDS, type ImageRecord, type WritableCoreField } from './image.js';
import { imageSchema, type FormatLists } from './schemas/image.js';

/** Keys a create body may not carry at all. */
const CREATE_READ_ONLY = ['direct_url', 'self', 'file', 'schema', 'stores'];

/** Core fields that no client sets: named in a create body they are refused as read-only. */
export const ALWAYS_READ_ONLY = [
  'created_at',
  'updated_at',
  'status',
  'checksum',
  'size',
  'virtual_size',
  'os_hash_algo',
  'os_hash_value',
];

/** Property names kept for upstream's bookkeeping; refused on create and in patches. */
export const RESERVED = new Set(['location', 'deleted', 'deleted_at']);
export const RESERVED_PREFIX = 'os_glance';

const MAX_INT32 = 2 ** 31 - 1;

// Upstream keeps metadata in MySQL's 3-byte utf8 and so refuses characters outside the BMP.
const FOUR_BYTE_CHARACTER = /[\u{10000}-\u{10FFFF}]/u;

export interface CreateRequest {
  id: string | null;
  core: Partial<Pick<ImageRecord, WritableCoreField>>;
  tags: string[];
  properties: Record<string, string>;
}

/** Validates documents against the image schema served at /v2/schemas/image. */
export class ImageSchemaValidator {
  readonly #formats: FormatLists;
  /** Compiled on first use, which keeps the compilation out of the start-up time. */
  #validate: ValidateFunction | null = null;

  constructor(formats: FormatLists) {
    this.#formats = formats;
  }

  check(document: Record<string, unknown>): void {
    this.#validate ??= new Ajv({ ...SCHEMA_OPTIONS, strict: false }).compile(
      imageSchema(this.#formats),
    );
    if (this.#validate(document)) return;

    const error = this.#validate.errors?.[0];
    const where = error?.instancePath ? error.instancePath.slice(1).replace(/\//g, '.') : '';
    const reason = `${where ? `${where}: ` : ''}${error?.message ?? 'invalid'}`;
    throw new InvalidInputError(`Provided object does not match schema 'image': ${reason}`);
  }
}

export function parseCreateBody(body: unknown, schema: ImageSchemaValidator): CreateRequest {
  if (!isPlainObject(body)) {
    throw new InvalidInputError('Request body must be a JSON object.');
  }
  for (const key of CREATE_READ_ONLY) {
    if (key in body) throw new ForbiddenError(`Attribute '${key}' is read-only.`);
  }
  schema.check(body);

  const request: CreateRequest = { id: null, core: {}, tags: [], properties: {} };
  for (const [key, value] of Object.entries(body)) {
    assignCreateField(request, key, value);
  }
  checkFourByteCharacters(request);
  return request;
}

function assignCreateField(request: CreateRequest, key: string, value: unknown): void {
  if (key === 'id') {
    request.id = (value as string).toLowerCase();
  } else if (key === 'tags') {
    request.tags = [...new Set(value as string[])];
  } else if ((WRITABLE_CORE_FIELDS as readonly string[]).includes(key)) {
    checkCoreValue(key as WritableCoreField, value);
    (request.core as Record<string, unknown>)[key] = value;
  } else if (ALWAYS_READ_ONLY.includes(key)) {
    throw new ForbiddenError(`Attribute '${key}' is read-only.`);
  } else if (key === 'locations') {
    throw new ForbiddenError(`Attribute '${key}' is reserved.`);
  } else {
    checkPropertyName(key);
    if (key.length > 255) {
      throw new InvalidInputError('Custom property should not be greater than 255 characters.');
    }
    // Schema-declared properties such as kernel_id may be null; they are kept as "".
    request.properties[key] = value === null ? '' : (value as string);
  }
}

function checkPropertyName(key: string): void {
  if (RESERVED.has(key) || key.startsWith(RESERVED_PREFIX)) {
    throw new ForbiddenError(`Attribute '${key}' is reserved.`);
  }
}

/** Rules the schema cannot express, checked where upstream's domain setters check them. */
export function checkCoreValue(field: WritableCoreField, value: unknown): void {
  if (field !== 'min_ram' && field !== 'min_disk') return;

  const number = value as number;
  if (number < 0) {
    throw new InvalidInputError(
      `Invalid value '${number}' for parameter '${field}': Cannot be a negative value.`,
    );
  }
  if (number > MAX_INT32) {
    throw new InvalidInputError(`'${field}' value is out of range, must not exceed ${MAX_INT32}.`);
  }
}

export function checkFourByteCharacters(request: {
  core: Record<string, unknown>;
  tags: string[];
  properties: Record<string, string>;
}): void {
  const fields = { ...request.core, ...request.properties };
  for (const [key, value] of Object.entries(fields)) {
    if (FOUR_BYTE_CHARACTER.test(key)) {
      throw new InvalidInputError("Property names can't contain 4 byte unicode.");
    }
    if (typeof value === 'string' && FOUR_BYTE_CHARACTER.test(value)) {
      throw new InvalidInputError(`${pythonTitle(key)} can't contain 4 byte unicode characters.`);
    }
  }
  if (request.tags.some((tag) => FOUR_BYTE_CHARACTER.test(tag))) {
    throw new InvalidInputError("Param values can't contain 4 byte unicode.");
  }
}

/** str.title() as Python spells it, which is what upstream's messages use. */
function pythonTitle(text: string): string {
  return text.toLowerCase().replace(/(^|[^a-z])([a-z])/g, (_m, before, letter) => {
    return `${before}${(letter as string).toUpperCase()}`;
  });
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
