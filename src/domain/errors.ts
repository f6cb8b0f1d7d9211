/**
 * Errors raised by the domain, the services, the repositories and the stores.
 *
 * None of them knows about HTTP: `src/http/errors.ts` is the one place that maps each class to a
 * status code and an upstream-compatible body. The message is the explanation a client sees, so
 * it follows the wording upstream Glance uses for the same condition.
 */
export abstract class GlimpseError extends Error {
  /** Extra text that upstream puts in the "detail" slot of its error body (used by 415). */
  readonly detail: string | undefined;

  constructor(message: string, options?: { cause?: unknown; detail?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.detail = options?.detail;
  }
}

/** The request is malformed or breaks a validation rule. */
export class InvalidInputError extends GlimpseError {}

/** The caller is known but not allowed to do this, or the resource refuses it (protected). */
export class ForbiddenError extends GlimpseError {}

/** The resource does not exist or is hidden from the caller. */
export class NotFoundError extends GlimpseError {}

/** The resource is in a state that does not allow the operation, or the id is taken. */
export class ConflictError extends GlimpseError {}

/** The resource disappeared while the operation was running. */
export class GoneError extends GlimpseError {}

/** A quota or size limit would be exceeded. */
export class QuotaExceededError extends GlimpseError {}

/** The request's media type, or the image data's disk format, is not acceptable. */
export class UnsupportedMediaTypeError extends GlimpseError {}

/** A byte range lies outside the image data. */
export class RangeNotSatisfiableError extends GlimpseError {}

/** No valid credentials were presented. */
export class UnauthorizedError extends GlimpseError {}

/** A backend (store, identity service, database) cannot serve the request right now. */
export class UnavailableError extends GlimpseError {}
