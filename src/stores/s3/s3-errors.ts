/**
 * Translation of what the S3 SDK throws into the store contract's errors. The SDK throws
 * service exceptions carrying the HTTP status in `$metadata`, and plain Node errors (with a
 * `code` such as ECONNREFUSED) when no answer came at all.
 */
import { StoreNotFoundError, StoreUnavailableError } from '../store.js';

interface SdkErrorShape {
  readonly name?: unknown;
  readonly code?: unknown;
  readonly message?: unknown;
  readonly $metadata?: { readonly httpStatusCode?: unknown };
}

/** The HTTP status S3 answered with, or null when it did not answer. */
export function statusOf(error: unknown): number | null {
  const status = (error as SdkErrorShape | null)?.$metadata?.httpStatusCode;
  return typeof status === 'number' ? status : null;
}

/** The S3 error code (NoSuchKey, NoSuchUpload...) or the Node error name. */
export function errorName(error: unknown): string {
  const name = (error as SdkErrorShape | null)?.name;
  return typeof name === 'string' ? name : 'Error';
}

export function isNotFound(error: unknown): boolean {
  const name = errorName(error);
  return statusOf(error) === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

/** A short account of a failure, for messages shown to admins and in logs. */
export function describe(error: unknown): string {
  const shape = (error ?? {}) as SdkErrorShape;
  const status = statusOf(error);
  const code = typeof shape.code === 'string' ? shape.code : null;
  const message = typeof shape.message === 'string' ? shape.message : String(error);
  if (status !== null) return `${errorName(error)} (HTTP ${status}): ${message}`;
  return code !== null && !message.includes(code) ? `${code}: ${message}` : message;
}

/**
 * The contract's error for a failed request: a missing object is StoreNotFoundError when
 * `missingIsNotFound`, everything else (no answer, 5xx, refused credentials) is
 * StoreUnavailableError naming the store.
 */
export function storeError(
  storeId: string,
  action: string,
  error: unknown,
  missingIsNotFound = true,
): Error {
  if (error instanceof StoreNotFoundError || error instanceof StoreUnavailableError) return error;
  const text = `S3 store ${storeId}: ${action} failed: ${describe(error)}`;
  if (missingIsNotFound && isNotFound(error)) return new StoreNotFoundError(text);
  return new StoreUnavailableError(text, { cause: error });
}
