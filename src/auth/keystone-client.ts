/**
 * Calls to the Keystone identity API as this service, with a token obtained from the
 * keystone_* credentials. Token validation and the unified limits reader share it. The token
 * is renewed shortly before it expires, and once more when Keystone refuses it early
 * (revoked). Keystone being unreachable is an UnavailableError (503), never a silent allow.
 */

import { UnavailableError } from '../domain/errors.js';
import { undici } from '../net/undici.js';

export interface KeystoneClientSettings {
  /** Identity API root, e.g. http://127.0.0.1:5000/v3. */
  readonly authUrl: string;
  readonly username: string;
  readonly password: string;
  readonly projectName: string;
  readonly userDomainName: string;
  readonly projectDomainName: string;
  readonly timeoutSeconds: number;
  /**
   * What the token is scoped to: the project named above (the default), or the whole system,
   * which Keystone requires to show the limits of every project.
   */
  readonly scope?: 'project' | 'system';
}

export interface KeystoneResponse {
  readonly status: number;
  readonly headers: Headers;
  json(): Promise<unknown>;
}

/** The service token is renewed when less than this is left of its life. */
const RENEW_MARGIN_MS = 120_000;

export class KeystoneClient {
  readonly authUrl: string;
  readonly #settings: KeystoneClientSettings;
  #serviceToken: { value: string; expiresAt: number } | null = null;
  #renewal: Promise<string> | null = null;

  constructor(settings: KeystoneClientSettings) {
    this.authUrl = settings.authUrl.replace(/\/+$/, '');
    this.#settings = settings;
  }

  /** This service's token, for calls to other services (another region's image service). */
  serviceToken(): Promise<string> {
    return this.#currentServiceToken();
  }

  /** GET with this service's token; a refused token is replaced and the call made again once. */
  async get(path: string, headers: Record<string, string> = {}): Promise<KeystoneResponse> {
    const first = await this.#call('GET', path, {
      ...headers,
      'x-auth-token': await this.#currentServiceToken(),
    });
    if (first.status !== 401) return first;
    // Our own token was refused (revoked or expired early): get a new one, once.
    this.#serviceToken = null;
    return this.#call('GET', path, {
      ...headers,
      'x-auth-token': await this.#currentServiceToken(),
    });
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
        scope:
          s.scope === 'system'
            ? { system: { all: true } }
            : { project: { name: s.projectName, domain: { name: s.projectDomainName } } },
      },
    };
    const response = await this.#call('POST', '/auth/tokens', {}, JSON.stringify(body));
    const value = response.headers.get('x-subject-token');
    if (response.status !== 201 || !value) {
      const hint = s.scope === 'system' ? ' and that the user has a role on the system' : '';
      throw new UnavailableError(
        `Keystone refused the service credentials (${response.status}); ` +
          `check the keystone_* options${hint}.`,
      );
    }
    const parsed = (await response.json()) as { token?: { expires_at?: string } };
    const expiresAt = Date.parse(parsed.token?.expires_at ?? '') || Date.now() + 3_600_000;
    this.#serviceToken = { value, expiresAt };
    return value;
  }

  async #call(
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string>,
    body?: string,
  ): Promise<KeystoneResponse> {
    const timeout = this.#settings.timeoutSeconds * 1000;
    try {
      const response = await undici().request(`${this.authUrl}${path}`, {
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
