import type { IncomingHttpHeaders } from 'node:http';

import { expandRoles } from '../domain/context.js';
import type { Authenticator, Identity } from './authenticator.js';

function header(headers: IncomingHttpHeaders, ...names: string[]): string | null {
  for (const name of names) {
    const value = headers[name];
    const text = Array.isArray(value) ? value[0] : value;
    if (text !== undefined && text.trim() !== '') return text.trim();
  }
  return null;
}

/**
 * Trusts the identity headers a Keystone middleware would set (X-Project-Id, X-User-Id,
 * X-Roles), for development and tests. A request without X-Roles is an admin, so that a
 * bare `curl` or a client with a dummy token can do everything.
 */
export class NoAuthAuthenticator implements Authenticator {
  readonly mode = 'noauth';

  async authenticate(headers: IncomingHttpHeaders): Promise<Identity> {
    const roles = header(headers, 'x-roles');
    return {
      projectId: header(headers, 'x-project-id', 'x-tenant-id', 'x-tenant'),
      userId: header(headers, 'x-user-id', 'x-user'),
      roles: expandRoles(roles === null ? ['admin'] : roles.split(',')),
    };
  }
}
