/**
 * JSON-patch documents for images (both upstream media types), validated first as a whole and
 * then applied in order to a copy of the image.
 */
import { ConflictError, ForbiddenError, InvalidInputError } from './errors.js';
import { WRITABLE_CORE_FIELDS, type ImageRecord } from './image.js';
import {
  ALWAYS_READ_ONLY,
  RESERVED,
  RESERVED_PREFIX,
  checkCoreValue,
  checkFourByteCharacters,
  isPlainObject,
  type ImageSchemaValidator,
} from './image-input.js';

export type PatchOperation = 'add' | 'replace' | 'remove';

export interface PatchChange {
  op: PatchOperation;
  /** Decoded JSON-pointer segments; more than one only for locations. */
  path: string[];
  value?: unknown;
  /** 4: the deprecated v2.0 media type, where add never overwrites; 10: v2.1. */
  draft: 4 | 10;
}

export const PATCH_MEDIA_TYPES: Readonly<Record<string, 4 | 10>> = {
  'application/openstack-images-v2.0-json-patch': 4,
  'application/openstack-images-v2.1-json-patch': 10,
};

const OPERATIONS: readonly PatchOperation[] = ['add', 'remove', 'replace'];

/** PATCH may not touch what create may not set, nor the id or the link fields. */
const READ_ONLY = new Set([...ALWAYS_READ_ONLY, 'direct_url', 'self', 'file', 'schema', 'id']);

/** Path depth per operation; every other root takes exactly one segment. */
const LOCATION_DEPTH: Readonly<Record<PatchOperation, number>> = {
  add: 2,
  remove: 2,
  replace: 1,
};

export function parsePatchBody(
  body: unknown,
  draft: 4 | 10,
  schema: ImageSchemaValidator,
): PatchChange[] {
  if (!Array.isArray(body)) {
    throw new InvalidInputError('Request body must be a JSON array of operation objects.');
  }
  return body.map((raw: unknown) => parseChange(raw, draft, schema));
}

function parseChange(raw: unknown, draft: 4 | 10, schema: ImageSchemaValidator): PatchChange {
  if (!isPlainObject(raw)) throw new InvalidInputError('Operations must be JSON objects.');

  const op = draft === 10 ? operationOfV21(raw) : operationOfV20(raw);
  const pointer = draft === 10 ? raw.path : raw[op];
  if (pointer === undefined) {
    throw new InvalidInputError("Unable to find 'path' in JSON Schema change");
  }
  if (typeof pointer !== 'string') {
    throw new InvalidInputError('Pointer must be a string.');
  }
  const path = decodePointer(pointer);
  checkDepth(op, path);

  const change: PatchChange = { op, path, draft };
  if (op !== 'remove') {
    if (!('value' in raw)) {
      throw new InvalidInputError(`Operation "${op}" requires a member named "value".`);
    }
    change.value = raw.value;
  }
  checkChange(change, schema);
  return change;
}

function operationOfV21(raw: Record<string, unknown>): PatchOperation {
  const available = OPERATIONS.join(', ');
  if (raw.op === undefined) {
    throw new InvalidInputError(
      `Unable to find \`op\` in JSON Schema change. It must be one of the following: ${available}.`,
    );
  }
  if (!OPERATIONS.includes(raw.op as PatchOperation)) {
    throw new InvalidInputError(
      `Invalid operation: \`${String(raw.op)}\`. It must be one of the following: ${available}.`,
    );
  }
  return raw.op as PatchOperation;
}

function operationOfV20(raw: Record<string, unknown>): PatchOperation {
  const present = OPERATIONS.filter((op) => op in raw);
  if (present.length > 1) {
    throw new InvalidInputError(
      'Operation objects must contain only one member named "add", "remove", or "replace".',
    );
  }
  if (present.length === 0) {
    throw new InvalidInputError(
      'Operation objects must contain exactly one member named "add", "remove", or "replace".',
    );
  }
  return present[0] as PatchOperation;
}

function decodePointer(pointer: string): string[] {
  if (!pointer.startsWith('/')) {
    throw new InvalidInputError(`Pointer \`${pointer}\` does not start with "/".`);
  }
  if (/\/\s*?\//.test(pointer.slice(1))) {
    throw new InvalidInputError(`Pointer \`${pointer}\` contains adjacent "/".`);
  }
  if (pointer.length > 1 && pointer.endsWith('/')) {
    throw new InvalidInputError(`Pointer \`${pointer}\` end with "/".`);
  }
  if (pointer.slice(1).trim() === '/') {
    throw new InvalidInputError(`Pointer \`${pointer}\` does not contains valid token.`);
  }
  if (/~[^01]/.test(pointer) || pointer.endsWith('~')) {
    throw new InvalidInputError(
      `Pointer \`${pointer}\` contains "~" not part of a recognized escape sequence.`,
    );
  }
  return pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~').trim());
}

function checkDepth(op: PatchOperation, path: string[]): void {
  const expected = path[0] === 'locations' ? LOCATION_DEPTH[op] : 1;
  if (path.length !== expected) {
    throw new InvalidInputError(`Invalid JSON pointer for this resource: '/${path.join('/')}'`);
  }
}

function checkChange(change: PatchChange, schema: ImageSchemaValidator): void {
  const root = change.path[0] as string;
  if (READ_ONLY.has(root)) throw new ForbiddenError(`Attribute '${root}' is read-only.`);
  if (RESERVED.has(root) || root.startsWith(RESERVED_PREFIX)) {
    throw new ForbiddenError(`Attribute '${root}' is reserved.`);
  }
  if (change.op === 'remove') return;

  const document =
    change.path.length === 1 ? { [root]: change.value } : { [root]: [change.value] };
  schema.check(document);
  if ((WRITABLE_CORE_FIELDS as readonly string[]).includes(root)) {
    checkCoreValue(root as (typeof WRITABLE_CORE_FIELDS)[number], change.value);
  }
  checkFourByteCharacters(
    root === 'tags'
      ? { core: {}, tags: change.value as string[], properties: {} }
      : { core: { [root]: change.value }, tags: [], properties: {} },
  );
}

/** What applying a patch needs to know about the caller, supplied by the service layer. */
export interface PatchRules {
  readonly isAdmin: boolean;
  /** Throws when the caller may not give the image this visibility. */
  checkVisibility(visibility: string): void;
}

const CORE_FIELDS = new Set<string>([...WRITABLE_CORE_FIELDS, 'tags']);

/** Applies validated changes in order and returns the updated copy of the image. */
export function applyPatch(
  image: ImageRecord,
  changes: readonly PatchChange[],
  rules: PatchRules,
): ImageRecord {
  const next: ImageRecord = {
    ...image,
    tags: [...image.tags],
    properties: { ...image.properties },
  };
  for (const change of changes) {
    // Locations are applied by the service layer, which can reach the stores.
    if (change.path[0] === 'locations') {
      throw new ForbiddenError('It is not allowed to modify locations of this image.');
    }
    if (change.op === 'remove') removeField(next, change.path[0] as string);
    else setField(next, change, rules);
  }
  return next;
}

function setField(image: ImageRecord, change: PatchChange, rules: PatchRules): void {
  const key = change.path[0] as string;
  const isCore = CORE_FIELDS.has(key);
  const exists = isCore || key in image.properties;

  if (change.op === 'replace' && !exists) {
    throw new ConflictError(`Property ${key} does not exist.`);
  }
  if (change.op === 'add' && change.draft === 4 && exists) {
    throw new ConflictError(`Property ${key} already present.`);
  }
  if (!isCore) {
    image.properties[key] = change.value === null ? '' : (change.value as string);
    return;
  }
  setCoreField(image, key, change.value, rules);
}

function setCoreField(image: ImageRecord, key: string, value: unknown, rules: PatchRules): void {
  if (key === 'owner' && !rules.isAdmin) {
    throw new ForbiddenError("Owner can't be updated by non admin.");
  }
  if (key === 'visibility') rules.checkVisibility(value as string);
  if ((key === 'disk_format' || key === 'container_format') && !canChangeFormats(image)) {
    throw new ForbiddenError(`Attribute ${key} can be only replaced for a queued image.`);
  }
  if (key === 'tags') {
    image.tags = [...new Set(value as string[])];
    return;
  }
  (image as unknown as Record<string, unknown>)[key] = value;
}

function canChangeFormats(image: ImageRecord): boolean {
  return image.status === 'queued' || image.status === 'importing';
}

function removeField(image: ImageRecord, key: string): void {
  if (CORE_FIELDS.has(key)) throw new ForbiddenError(`Property ${key} may not be removed.`);
  if (!(key in image.properties)) throw new ConflictError(`Property ${key} does not exist.`);
  delete image.properties[key];
}
