/**
 * Decoding of JSON request bodies with the checks a hostile client makes necessary: valid
 * UTF-8, bounded nesting, and no NUL bytes or lone surrogates in any string (neither survives
 * a round trip through PostgreSQL text columns, and upstream refuses such input too).
 */
import { InvalidInputError } from '../domain/errors.js';

const MAX_DEPTH = 32;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// A high surrogate not followed by a low one, or a low one not preceded by a high one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function parseJsonBody(raw: unknown): unknown {
  if (!Buffer.isBuffer(raw) || raw.length === 0) {
    throw new InvalidInputError('Body expected in request.');
  }

  let text: string;
  let document: unknown;
  try {
    text = utf8.decode(raw);
    document = JSON.parse(text);
  } catch (error) {
    throw new InvalidInputError('Malformed JSON in request body.', { cause: error });
  }
  checkStructure(document);
  return document;
}

/** Iterative, so that nesting cannot exhaust the stack before the depth check sees it. */
function checkStructure(document: unknown): void {
  const pending: Array<{ value: unknown; depth: number }> = [{ value: document, depth: 0 }];
  while (pending.length > 0) {
    const { value, depth } = pending.pop() as { value: unknown; depth: number };
    if (typeof value === 'string') {
      checkString(value);
    } else if (typeof value === 'object' && value !== null) {
      if (depth >= MAX_DEPTH) {
        throw new InvalidInputError(`JSON body is nested deeper than ${MAX_DEPTH} levels.`);
      }
      if (!Array.isArray(value)) Object.keys(value).forEach(checkString);
      for (const child of Object.values(value)) pending.push({ value: child, depth: depth + 1 });
    }
  }
}

function checkString(value: string): void {
  if (value.includes('\u0000')) {
    throw new InvalidInputError('Strings in the request body must not contain NUL characters.');
  }
  if (LONE_SURROGATE.test(value)) {
    throw new InvalidInputError('Strings in the request body must be valid Unicode.');
  }
}
