/**
 * A read-only store for image data that lives on a web server: its locations are the http://
 * and https:// URLs of the data, added to images by hand. Glimpse never writes there.
 *
 * - Redirects are followed, up to MAX_REDIRECTS (as upstream Glance's http store does).
 *   Credentials in a location (user:password@) are sent as Basic authorization, and only to
 *   the origin they came with.
 * - A byte range is asked for with a Range header. A server that ignores it and sends the
 *   whole body (200) is read up to the end of the range, skipping the bytes before it.
 * - A body that ends before its Content-Length fails the stream, as does a connection that
 *   is cut or stays silent for IDLE_TIMEOUT_MS while the reader is waiting for data.
 * - delete does nothing: the data belongs to the web server, and removing a location only
 *   forgets it (upstream does the same).
 */
import { Readable } from 'node:stream';

import type { Agent, Dispatcher } from 'undici';

import { undici } from '../../net/undici.js';
import {
  StoreNotFoundError,
  StoreReadOnlyError,
  StoreUnavailableError,
  type ByteRange,
  type ImageStore,
  type StoreWriter,
} from '../store.js';

export interface HttpStoreOptions {
  readonly id: string;
}

const MAX_REDIRECTS = 5;
const CONNECT_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 60_000;
/** Silence while the reader waits; a paused reader does not count (undici stops the clock). */
const IDLE_TIMEOUT_MS = 60_000;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const GONE_STATUSES = new Set([404, 410]);

type Method = 'GET' | 'HEAD';

export class HttpStore implements ImageStore {
  readonly id: string;
  readonly type = 'http';
  readonly scheme = 'http';
  readonly readOnly = true;
  #agent: Agent | null = null;

  constructor(options: HttpStoreOptions) {
    this.id = options.id;
  }

  async init(): Promise<void> {}

  async close(): Promise<void> {
    const agent = this.#agent;
    this.#agent = null;
    // destroy, not close: close would wait for readers that may never finish.
    await agent?.destroy();
  }

  owns(location: string): boolean {
    return parseHttpUrl(location) !== null;
  }

  properties(): Record<string, unknown> {
    return {};
  }

  /** There is no one server to ask: each location names its own. */
  async probe(): Promise<void> {}

  async sizeOf(location: string): Promise<number> {
    const response = await this.#fetch(location, 'HEAD');
    await discard(response);
    this.#checkStatus(location, response.statusCode, [200]);
    const length = contentLength(response);
    if (length === null) {
      throw new StoreUnavailableError(
        `http store ${this.id}: ${redact(location)} gives no Content-Length`,
      );
    }
    return length;
  }

  locationOf(_imageId: string): string {
    throw new StoreReadOnlyError(`the http store ${this.id} is read-only`);
  }

  async createWriter(_imageId: string): Promise<StoreWriter> {
    throw new StoreReadOnlyError(`the http store ${this.id} is read-only`);
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const response = await this.#fetch(location, 'GET', range);
    const status = response.statusCode;
    // A range starting past the end holds no bytes, as a file store would answer.
    if (range && status === 416) {
      await discard(response);
      return Readable.from([]);
    }
    if (status !== 200 && !(range && status === 206)) await discard(response);
    this.#checkStatus(location, status, range ? [200, 206] : [200]);
    if (status === 206 && range && contentRangeStart(response) !== range.start) {
      await discard(response);
      throw this.#unavailable(location, 'answered with another range than asked');
    }
    const window = status === 200 && range ? range : null;
    return Readable.from(
      bodyBytes(response, window, (error) => this.#failed(location, error)),
      {
        objectMode: false,
      },
    );
  }

  /** The data belongs to the web server; forgetting the location is all there is to do. */
  async delete(_location: string): Promise<void> {}

  async discardUncommitted(_imageId: string): Promise<void> {}

  /** Sends the request, following redirects; answers with the first non-redirect. */
  async #fetch(location: string, method: Method, range?: ByteRange) {
    const first = parseHttpUrl(location);
    if (first === null) {
      throw new StoreNotFoundError(`location ${redact(location)} is not an http(s) URL`);
    }
    let url = first;
    for (let redirects = 0; ; redirects += 1) {
      const sameOrigin = url.origin === first.origin;
      const response = await this.#send(url, method, range, sameOrigin ? first : null);
      const target = redirectTarget(response, url);
      if (target === undefined) return response;
      await discard(response);
      if (target === null || redirects >= MAX_REDIRECTS) {
        throw this.#unavailable(location, `stopped after ${redirects + 1} redirects`);
      }
      url = target;
    }
  }

  async #send(
    url: URL,
    method: Method,
    range: ByteRange | undefined,
    credentials: URL | null,
  ): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = {
      // The bytes are the image: a content encoding such as gzip would change them.
      'accept-encoding': 'identity',
      'user-agent': 'glimpse-http-store',
    };
    if (range) headers.range = `bytes=${range.start}-${range.end}`;
    const authorization = credentials && basicAuthorization(credentials);
    if (authorization) headers.authorization = authorization;
    const bare = new URL(url.href);
    bare.username = '';
    bare.password = '';
    return undici()
      .request(bare, {
        dispatcher: this.#dispatcher(),
        method,
        headers,
        headersTimeout: HEADERS_TIMEOUT_MS,
        bodyTimeout: IDLE_TIMEOUT_MS,
      })
      .catch((error: unknown) => {
        throw this.#failed(url.href, error);
      });
  }

  #dispatcher(): Agent {
    this.#agent ??= new (undici().Agent)({ connect: { timeout: CONNECT_TIMEOUT_MS } });
    return this.#agent;
  }

  #checkStatus(location: string, status: number, expected: readonly number[]): void {
    if (expected.includes(status)) return;
    if (GONE_STATUSES.has(status)) {
      throw new StoreNotFoundError(`no data at ${redact(location)} (HTTP ${status})`);
    }
    throw this.#unavailable(location, `answered HTTP ${status}`);
  }

  #failed(location: string, error: unknown): Error {
    if (error instanceof StoreUnavailableError) return error;
    const code = (error as { code?: unknown } | null)?.code;
    const message = error instanceof Error ? error.message : String(error);
    const reason = typeof code === 'string' && !message.includes(code) ? `${code}: ` : '';
    return new StoreUnavailableError(
      `http store ${this.id}: ${redact(location)} failed: ${reason}${message}`,
      { cause: error },
    );
  }

  #unavailable(location: string, reason: string): StoreUnavailableError {
    return new StoreUnavailableError(`http store ${this.id}: ${redact(location)} ${reason}`);
  }
}

function parseHttpUrl(location: string): URL | null {
  if (!/^https?:\/\//i.test(location)) return null;
  try {
    return new URL(location);
  } catch {
    return null;
  }
}

/** Locations may carry a password; messages never show it. */
function redact(location: string): string {
  const url = parseHttpUrl(location);
  if (url === null || (url.username === '' && url.password === '')) return location;
  url.username = '***';
  url.password = '';
  return url.href;
}

function basicAuthorization(url: URL): string | null {
  if (url.username === '' && url.password === '') return null;
  const pair = `${safeDecode(url.username)}:${safeDecode(url.password)}`;
  return `Basic ${Buffer.from(pair).toString('base64')}`;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * undefined: not a redirect. null: a redirect that cannot be followed (no Location, or to
 * something other than http(s)). Otherwise the next URL.
 */
function redirectTarget(response: Dispatcher.ResponseData, base: URL): URL | null | undefined {
  if (!REDIRECT_STATUSES.has(response.statusCode)) return undefined;
  const location = response.headers.location;
  if (typeof location !== 'string' || location.trim() === '') return null;
  try {
    const next = new URL(location.trim(), base);
    return next.protocol === 'http:' || next.protocol === 'https:' ? next : null;
  } catch {
    return null;
  }
}

function contentLength(response: Dispatcher.ResponseData): number | null {
  const value = response.headers['content-length'];
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim())) return null;
  const length = Number(value.trim());
  return Number.isSafeInteger(length) ? length : null;
}

/** The first byte of a 206 answer's Content-Range (`bytes 10-19/100`), or null. */
function contentRangeStart(response: Dispatcher.ResponseData): number | null {
  const value = response.headers['content-range'];
  const match = typeof value === 'string' ? /^bytes\s+(\d+)-\d+\/(\d+|\*)$/i.exec(value) : null;
  return match?.[1] === undefined ? null : Number(match[1]);
}

/** Frees a response whose body is not wanted (reads a little of it to keep the connection). */
async function discard(response: Dispatcher.ResponseData): Promise<void> {
  await response.body.dump().catch(() => undefined);
}

/**
 * The body's bytes, or only those of `window` (counted from the body's first byte) when the
 * server sent the whole data for a range. Stops reading once the window is passed. Fails when
 * the body ends before its Content-Length.
 */
async function* bodyBytes(
  response: Dispatcher.ResponseData,
  window: ByteRange | null,
  fail: (error: unknown) => Error,
): AsyncGenerator<Buffer, void, undefined> {
  const expected = contentLength(response);
  let received = 0;
  try {
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      const offset = received;
      received += chunk.length;
      if (window === null) {
        yield chunk;
        continue;
      }
      const from = Math.max(window.start - offset, 0);
      const to = Math.min(window.end + 1 - offset, chunk.length);
      if (to > from) yield chunk.subarray(from, to);
      if (received > window.end) return;
    }
  } catch (error) {
    throw fail(error);
  }
  if (expected !== null && received !== expected) {
    throw fail(new Error(`the body ended after ${received} of ${expected} bytes`));
  }
}
