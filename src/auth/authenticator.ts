import type { IncomingHttpHeaders } from 'node:http';

/** The identity an authenticator vouches for; the HTTP layer adds the request id. */
export interface Identity {
  readonly projectId: string | null;
  readonly userId: string | null;
  /** Expanded, lower-cased role names. */
  readonly roles: readonly string[];
  /** Roles of a service token sent beside the user's (X-Service-Token), if any. */
  readonly serviceRoles?: readonly string[];
  /**
   * The caller's own token, for calls made on the caller's behalf while the request lasts
   * (glance-download checks what the caller may see in another region). Never stored.
   */
  readonly authToken?: string;
}

/**
 * Establishes who is calling. Implementations throw UnauthorizedError for missing or bad
 * credentials and UnavailableError when the identity service cannot be reached.
 */
export interface Authenticator {
  readonly mode: string;
  /** WWW-Authenticate value sent with every 401, telling clients where to get a token. */
  readonly challenge?: string;
  authenticate(headers: IncomingHttpHeaders): Promise<Identity>;
}
