/**
 * Keystone token authentication, as keystonemiddleware does it for upstream Glance: the
 * caller's X-Auth-Token is validated with Keystone (GET /v3/auth/tokens, authorised by this
 * service's own token, see ./keystone-client.ts), and the project, user and roles come from
 * Keystone's answer.
 *
 * Validated tokens are cached for a bounded time (`token_cache_seconds`): a revoked token
 * keeps working until its cache entry ages out, which is the price of not asking Keystone on
 * every request. Keystone being unreachable is a 503, never a silent allow.
 */
import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

import { expandRoles } from '../domain/context.js';
import { ForbiddenError, UnauthorizedError, UnavailableError } from '../domain/errors.js';
import type { Authenticator, Identity } from './authenticator.js';
import { KeystoneClient, type KeystoneClientSettings } from './keystone-client.js';

/** The service's own credentials, plus how validated tokens are cached. */
export interface KeystoneSettings extends Omit<KeystoneClientSettings, 'scope'> {
  readonly cacheSeconds: number;
  readonly cacheSize: number;
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

export class KeystoneAuthenticator implements Authenticator {
  readonly mode = 'keystone';
  readonly challenge: string;
  readonly #settings: KeystoneSettings;
  readonly #cache = new Map<string, CachedToken>();
  readonly #inFlight = new Map<string, Promise<Identity>>();
  readonly #client: KeystoneClient;

  constructor(settings: KeystoneSettings) {
    this.#settings = settings;
    this.#client = new KeystoneClient(settings);
    this.challenge = `Keystone uri="${publicIdentityUri(this.#client.authUrl)}"`;
  }

  async authenticate(headers: IncomingHttpHeaders): Promise<Identity> {
    const token = single(headers['x-auth-token']);
    if (!token) throw new UnauthorizedError('This server could not verify your identity.');

    const identity = { ...(await this.#validate(token)), authToken: token };
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

    // Concurrent requests with the same uncached token share one call to Keystone.
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = this.#validateWithKeystone(key, token).finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  async #validateWithKeystone(key: string, token: string): Promise<Identity> {
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

  async #fetchToken(token: string): Promise<TokenBody> {
    const response = await this.#client.get('/auth/tokens', { 'x-subject-token': token });
    if (response.status === 200) return (await response.json()) as TokenBody;
    if (response.status === 404) {
      throw new UnauthorizedError('The request you have made requires authentication.');
    }
    throw new UnavailableError(`Keystone answered ${response.status} to token validation.`);
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
