/**
 * Byte ranges of a download, parsed as upstream Glance does: one range only (a comma is a
 * 400), anything unparseable or starting past the end is a 416, and the `Content-Range`
 * request header is accepted in place of `Range` for older clients.
 */
import { InvalidInputError, RangeNotSatisfiableError } from '../domain/errors.js';
import type { ByteRange } from '../stores/store.js';

const RANGE = /^bytes=(\d{0,20})-(\d{0,20})$/;
const CONTENT_RANGE = /^bytes (\d{1,20})-(\d{1,20})\/(\d{1,20}|\*)$/;

/** The inclusive range to send, or null for the whole image. */
export function requestedRange(
  headers: { range?: string; 'content-range'?: string },
  size: number,
): ByteRange | null {
  if (headers.range !== undefined) return parseRange(headers.range.trim(), size);
  if (headers['content-range'] !== undefined) {
    return parseContentRange(headers['content-range'].trim(), size);
  }
  return null;
}

function parseRange(header: string, size: number): ByteRange {
  if (header.includes(',')) {
    throw new InvalidInputError('Multiple ranges are not supported.');
  }
  const match = RANGE.exec(header);
  if (!match) throw unsatisfiable(size);

  const [, first = '', last = ''] = match;
  if (first === '' && last === '') throw unsatisfiable(size);
  if (first === '') {
    // A suffix: the last N bytes, or the whole image when N is at least its size.
    const length = Number(last);
    if (length === 0) throw unsatisfiable(size);
    return { start: Math.max(0, size - length), end: size - 1 };
  }
  return bounded(Number(first), last === '' ? size - 1 : Number(last), size);
}

function parseContentRange(header: string, size: number): ByteRange {
  const match = CONTENT_RANGE.exec(header);
  if (!match) throw unsatisfiable(size);
  return bounded(Number(match[1]), Number(match[2]), size);
}

function bounded(start: number, end: number, size: number): ByteRange {
  if (end < start || start >= size) throw unsatisfiable(size);
  return { start, end: Math.min(end, size - 1) };
}

function unsatisfiable(size: number): RangeNotSatisfiableError {
  return new RangeNotSatisfiableError(
    `Requested range not satisfiable: the image has ${size} bytes.`,
  );
}
