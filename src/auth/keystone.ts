/**
 * Keystone token authentication, as keystonemiddleware does it for upstream Glance: the
 * caller's X-Auth-Token is validated with Keystone (GET /v3/auth/tokens, authorised by this
 * service's own token), and the project, user and roles come from Keystone's answer.
 *
 * Validated tokens are cached for a bounded time (`token_cache_seconds`): a revoked token
 * keeps working until its cache entry ages out, which is the price of not asking Keystone on
 * every request. Keystone being unreachable is a 503, never a silent allow.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'undici';

import { expandRoles } from '../domain/context.js';
import { ForbiddenError, UnauthorizedError, UnavailableError } from '../domain/errors.js';
import type { Authenticator, Identity } from './authenticator.js';

export interface KeystoneSettings {
  /** Identity API root, e.g. http://127.0.0.1:5000/v3. */
  readonly authUrl: string;
  readonly username: string;
  readonly password: string;
  readonly projectName: string;
  readonly userDomainName: string;
  readonly projectDomainName: string;
  readonly cacheSeconds: number;
  readonly cacheSize: number;
  readonly timeoutSeconds: number;
}

interface TokenBody {
  token?: {
    expires_at?: string;
    roles?: Array<{ name?: string }>;
    project?: { id?: string };
    user?: { id?: string };
    system?: unknown;
  };
}

interface CachedToken {
  readonly identity: Identity;
  readonly validUntil: number;
}

/** The service token is renewed when less than this is left of its life. */
const RENEW_MARGIN_MS = 120_000;

export class KeystoneAuthenticator implements Authenticator {
  readonly mode = 'keystone';
  readonly challenge: string;
  readonly #settings: KeystoneSettings;
  readonly #cache = new Map<string, CachedToken>();
  #serviceToken: { value: string; expiresAt: number } | null = null;
  #renewal: Promise<string> | null = null;

  constructor(settings: KeystoneSettings) {
    this.#settings = { ...settings, authUrl: settings.authUrl.replace(/\/+$/, '') };
    this.challenge = `Keystone uri="${publicIdentityUri(this.#settings.authUrl)}"`;
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<Identity> {
    const token = single(headers['x-auth-token']);
    if (!token) throw new UnauthorizedError('This server could not verify your identity.');

    const identity = await this.#validate(token);
    const serviceToken = single(headers['x-service-token']);
    if (!serviceToken) return identity;

    // A service acting for a user: its token must be valid too; its roles are kept apart.
    const service = await this.#validate(serviceToken);
    return { ...identity, serviceRoles: service.roles };
  }

  async #validate(token: string): Promise<Identity> {
    const key = createHash('sha256').update(token).digest('hex');
    const cached = this.#cache.get(key);
    if (cached && cached.validUntil > Date.now()) return cached.identity;
    this.#cache.delete(key);

    const body = await this.#fetchToken(token);
    const identity = identityOf(body);
    const expiresAt = Date.parse(body.token?.expires_at ?? '') || Date.now();
    const validUntil = Math.min(expiresAt, Date.now() + this.#settings.cacheSeconds * 1000);
    this.#remember(key, { identity, validUntil });
    return identity;
  }

  #remember(key: string, entry: CachedToken): void {
    if (this.#cache.size >= this.#settings.cacheSize) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    this.#cache.set(key, entry);
  }

  async #fetchToken(token: string, retried = false): Promise<TokenBody> {
    const serviceToken = await this.#currentServiceToken();
    const response = await this.#call('GET', '/auth/tokens', {
      'x-auth-token': serviceToken,
      'x-subject-token': token,
    });
    if (response.status === 200) return (await response.json()) as TokenBody;
    if (response.status === 404) {
      throw new UnauthorizedError('The request you have made requires authentication.');
    }
    if (response.status === 401 && !retried) {
      // Our own token was refused (revoked or expired early): get a new one, once.
      this.#serviceToken = null;
      return this.#fetchToken(token, true);
    }
    throw new UnavailableError(`Keystone answered ${response.status} to token validation.`);
  }

  async #currentServiceToken(): Promise<string> {
    const current = this.#serviceToken;
    if (current && current.expiresAt - Date.now() > RENEW_MARGIN_MS) return current.value;

    // Concurrent requests share one renewal.
    this.#renewal ??= this.#issueServiceToken().finally(() => {
      this.#renewal = null;
    });
    return this.#renewal;
  }

  async #issueServiceToken(): Promise<string> {
    const s = this.#settings;
    const body = {
      auth: {
        identity: {
          methods: ['password'],
          password: {
            user: { name: s.username, domain: { name: s.userDomainName }, password: s.password },
          },
        },
        scope: { project: { name: s.projectName, domain: { name: s.projectDomainName } } },
      },
    };
    const response = await this.#call('POST', '/auth/tokens', {}, JSON.stringify(body));
    const value = response.headers.get('x-subject-token');
    if (response.status !== 201 || !value) {
      throw new UnavailableError(
        `Keystone refused the service credentials (${response.status}); ` +
          'check the keystone_* options.',
      );
    }
    const parsed = (await response.json()) as TokenBody;
    const expiresAt = Date.parse(parsed.token?.expires_at ?? '') || Date.now() + 3_600_000;
    this.#serviceToken = { value, expiresAt };
    return value;
  }

  async #call(
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<{ status: number; headers: Headers; json(): Promise<unknown> }> {
    const timeout = this.#settings.timeoutSeconds * 1000;
    try {
      const response = await request(`${this.#settings.authUrl}${path}`, {
        method,
        headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
        body,
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
      const text = await response.body.text();
      const responseHeaders = new Headers();
      for (const [name, value] of Object.entries(response.headers)) {
        if (typeof value === 'string') responseHeaders.set(name, value);
      }
      return {
        status: response.statusCode,
        headers: responseHeaders,
        json: async () => (text ? JSON.parse(text) : {}) as unknown,
      };
    } catch (error) {
      throw new UnavailableError('The identity service (Keystone) is unreachable.', {
        cause: error,
      });
    }
  }
}

/** The identity endpoint as clients should see it: no credentials, no version suffix. */
function publicIdentityUri(authUrl: string): string {
  const url = new URL(authUrl);
  url.username = '';
  url.password = '';
  return url.toString().replace(/\/+$/, '').replace(/\/v3$/, '');
}

function identityOf(body: TokenBody): Identity {
  const token = body.token ?? {};
  if (token.system !== undefined && token.project === undefined) {
    throw new ForbiddenError('System-scoped tokens are not accepted; use a project scope.');
  }
  const roles = (token.roles ?? []).map((role) => role.name ?? '').filter(Boolean);
  return {
    projectId: token.project?.id ?? null,
    userId: token.user?.id ?? null,
    roles: expandRoles(roles),
  };
}

function single(value: string | string[] | undefined): string | null {
  const text = Array.isArray(value) ? value[0] : value;
  return text && text.trim() !== '' ? text.trim() : null;
}
