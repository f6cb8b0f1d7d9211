/**
 * Requests to one Swift account: the token is fetched on first use, kept until shortly before
 * it expires, and fetched again when Swift answers 401 (once per request, and only for
 * requests that can be sent again: a streamed body is gone once sent).
 *
 * Every request is bounded in time: connecting, waiting for the answer's headers once the
 * request is sent, and silences while its body arrives. Failures to get an answer become
 * StoreUnavailableError naming the store and what was being done.
 */
import { Readable } from 'node:stream';

import type { Agent, Dispatcher } from 'undici';

import { undici } from '../../net/undici.js';
import { StoreNotFoundError, StoreUnavailableError } from '../store.js';
import { authenticate, describe, type SwiftSession } from './swift-auth.js';
import type { SwiftStoreOptions } from './swift-config.js';

export type SwiftMethod = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';

export interface SwiftRequest {
  readonly method: SwiftMethod;
  /** Encoded path under the storage URL, with any query: `/container/object?x=y`. */
  readonly path: string;
  /** What is being done, for error messages: "reading glance/<id>". */
  readonly what: string;
  readonly headers?: Record<string, string>;
  /** A string or buffer can be sent again after a new login; a stream cannot. */
  readonly body?: string | Buffer | Readable;
  /** Overrides the store's request timeout (a server-side copy takes longer). */
  readonly headersTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_BODY_TIMEOUT_MS = 60_000;
/** A token is renewed this long before it expires, so that no long request outlives it. */
const RENEW_MARGIN_MS = 5 * 60_000;
/** How long close() lets requests in flight finish before cutting them. */
const CLOSE_GRACE_MS = 5_000;
/** Errors of a reused keep-alive connection the server had closed: worth one more try. */
const STALE_CONNECTION_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

export class SwiftClient {
  readonly storeId: string;
  readonly #options: SwiftStoreOptions;
  readonly #agent: Agent;
  readonly #requestTimeoutMs: number;
  readonly #bodyTimeoutMs: number;
  #current: SwiftSession | null = null;
  #login: Promise<SwiftSession> | null = null;
  #storageUrl: string | null = null;

  constructor(options: SwiftStoreOptions) {
    this.storeId = options.id;
    this.#options = options;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#bodyTimeoutMs = options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
    this.#agent = new (undici().Agent)({
      connect: { timeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS },
    });
  }

  /** The account's URL, once a login told it; null before. */
  get storageUrl(): string | null {
    return this.#storageUrl;
  }

  /** A token that is good for a while yet, logging in when there is none. */
  async session(): Promise<SwiftSession> {
    const current = this.#current;
    if (current && current.expiresAt - RENEW_MARGIN_MS > Date.now()) return current;
    // Concurrent callers share one login.
    this.#login ??= this.#logIn().finally(() => {
      this.#login = null;
    });
    return this.#login;
  }

  /**
   * Sends a request and returns Swift's answer, whatever its status but 401. The caller
   * consumes or dumps the answer's body.
   */
  async request(request: SwiftRequest): Promise<Dispatcher.ResponseData> {
    const session = await this.session();
    const response = await this.#sendWithRetry(session, request);
    if (response.statusCode !== 401) return response;

    await response.body.dump();
    this.#forget(session);
    if (request.body instanceof Readable) {
      throw this.unavailable(`${request.what}: Swift refused the token while data was sent`);
    }
    const retried = await this.#sendWithRetry(await this.session(), request);
    if (retried.statusCode === 401) {
      await retried.body.dump();
      throw this.unavailable(`${request.what}: Swift refused a fresh token`);
    }
    return retried;
  }

  /**
   * The error for an answer with an unexpected status, after reading its (short) body: 404 is
   * StoreNotFoundError; 5xx, 507, refusals and throttling are StoreUnavailableError; any other
   * status is a plain Error, since it means a request Glimpse should not have made.
   */
  async statusError(response: Dispatcher.ResponseData, what: string): Promise<Error> {
    const status = response.statusCode;
    const text = await response.body.text().catch(() => '');
    const detail = text.replace(/\s+/g, ' ').trim().slice(0, 300);
    const message =
      `Swift store ${this.storeId}: ${what}: Swift answered ${status}` +
      (detail === '' ? '' : ` (${detail})`);
    if (status === 404) return new StoreNotFoundError(message);
    if (status >= 500 || [401, 403, 408, 429].includes(status)) {
      return new StoreUnavailableError(message);
    }
    return new Error(message);
  }

  unavailable(what: string, cause?: unknown): StoreUnavailableError {
    const reason = cause === undefined ? '' : `: ${describe(cause)}`;
    return new StoreUnavailableError(`Swift store ${this.storeId}: ${what}${reason}`, { cause });
  }

  async close(): Promise<void> {
    const grace = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref());
    await Promise.race([this.#agent.close(), grace]);
    await this.#agent.destroy();
  }

  async #logIn(): Promise<SwiftSession> {
    const session = await authenticate(this.#options, {
      dispatcher: this.#agent,
      requestTimeoutMs: this.#requestTimeoutMs,
    });
    this.#current = session;
    this.#storageUrl = session.storageUrl;
    return session;
  }

  /** Drops a token Swift refused, unless a newer one replaced it already. */
  #forget(session: SwiftSession): void {
    if (this.#current === session) this.#current = null;
  }

  async #sendWithRetry(
    session: SwiftSession,
    request: SwiftRequest,
  ): Promise<Dispatcher.ResponseData> {
    try {
      return await this.#send(session, request);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      const replayable = !(request.body instanceof Readable) && !request.signal?.aborted;
      if (!replayable || !STALE_CONNECTION_CODES.has(code)) {
        throw this.unavailable(`${request.what} failed`, error);
      }
      try {
        return await this.#send(session, request);
      } catch (second) {
        throw this.unavailable(`${request.what} failed`, second);
      }
    }
  }

  #send(session: SwiftSession, request: SwiftRequest): Promise<Dispatcher.ResponseData> {
    return undici().request(`${session.storageUrl}${request.path}`, {
      dispatcher: this.#agent,
      method: request.method,
      headers: { 'x-auth-token': session.token, ...request.headers },
      body: request.body,
      headersTimeout: request.headersTimeoutMs ?? this.#requestTimeoutMs,
      bodyTimeout: this.#bodyTimeoutMs,
      signal: request.signal,
    });
  }
}

/** `/<container>/<object>` with each part of the name encoded, slashes kept. */
export function objectPath(container: string, name = ''): string {
  const encoded = name === '' ? '' : `/${name.split('/').map(encodeURIComponent).join('/')}`;
  return `/${encodeURIComponent(container)}${encoded}`;
}

/** A header's value (the first, should Swift repeat it). */
export function headerOf(response: Dispatcher.ResponseData, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
