/**
 * The HTTP source of the `web-download` import method: opens a URI that passed the import filter
 * and streams its body.
 *
 * Three things keep the server from being steered to places the filter refused:
 * - Redirects are followed here, one hop at a time, and every target goes through the filter
 *   before any connection is made to it.
 * - Each hop connects to an address that the filter accepted. The host name is resolved once,
 *   by the filter, and the socket's lookup returns those answers, so a second DNS answer
 *   (rebinding) cannot send the connection elsewhere. The URL keeps the name, so the Host header,
 *   TLS SNI and certificate checks are unchanged.
 * - Each hop has its own undici Agent, never the global dispatcher, so no proxy configured in the
 *   environment sits between the check and the connection.
 *
 * A body shorter than its Content-Length fails the download, as upstream. So does one that goes
 * on past it, which upstream's reader would silently cut at the announced length.
 */
import type { LookupFunction } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';

import type { Agent, buildConnector, Dispatcher } from 'undici';

import { InvalidInputError } from '../domain/errors.js';
import type { ResolvedAddress, UriFilterOptions, ValidatedImportUri } from './uri-filter.js';
import { defaultUriFilterOptions, redactUri, resolveImportUri } from './uri-filter.js';
import { undici } from '../net/undici.js';

export interface WebSourceOptions extends UriFilterOptions {
  connectTimeoutMs: number;
  /** Longest wait for the response headers, and for each chunk of the body. */
  readTimeoutMs: number;
  maxRedirects: number;
}

export interface WebSource {
  /** Iterate it to the end, or stop early (`break`, `return()`): either frees the connection. */
  body: AsyncIterable<Buffer>;
  /** From the Content-Length header; null when the response has none (chunked). */
  contentLength: number | null;
}

/** The source answered with a status that is neither 2xx nor a followable redirect. */
export class WebSourceHttpError extends Error {
  constructor(
    readonly status: number,
    uri: string,
  ) {
    super(`web-download source ${redactUri(uri)} answered HTTP ${status}`);
    this.name = 'WebSourceHttpError';
  }
}

export function defaultWebSourceOptions(): WebSourceOptions {
  // urllib, which upstream uses, follows up to 10 redirects.
  return {
    ...defaultUriFilterOptions(),
    connectTimeoutMs: 30_000,
    readTimeoutMs: 60_000,
    maxRedirects: 10,
  };
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const FETCHABLE_PROTOCOLS = new Set(['http:', 'https:']);

interface Hop {
  uri: string;
  response: Dispatcher.ResponseData;
  agent: Agent;
  connection: ConnectionWatch;
}

/** What a hop's connection did that undici does not report to the response's reader. */
interface ConnectionWatch {
  /** Bytes arrived after the end of the response, which no request had asked for. */
  sentPastResponse: boolean;
}

/**
 * Opens the URI for streaming. Redirects are followed manually (at most maxRedirects) and each
 * target is re-validated; `originHeaders` go only to the URI's own origin. Non-2xx →
 * WebSourceHttpError. The body iterator throws if fewer or more bytes arrive than
 * Content-Length said, and if no byte arrives for readTimeoutMs.
 */
export async function openWebSource(
  uri: string,
  options: WebSourceOptions,
  originHeaders: Readonly<Record<string, string>> = {},
): Promise<WebSource> {
  const origin = new URL(uri).origin;
  let current = uri;
  for (let redirects = 0; ; redirects += 1) {
    const target = await resolveImportUri(current, options);
    // Headers such as a token go to the URI's own origin only, never after a redirect away.
    const extra = target.url.origin === origin ? originHeaders : {};
    const hop = await send(current, target, options, extra);
    const location = redirectLocation(hop.response);
    if (location === null) return openBody(hop, options);
    await closeHop(hop);
    if (redirects >= options.maxRedirects) {
      throw new Error(`web-download stopped after ${options.maxRedirects} redirects`);
    }
    current = resolveLocation(location, target.url);
  }
}

async function send(
  uri: string,
  target: ValidatedImportUri,
  options: WebSourceOptions,
  extraHeaders: Readonly<Record<string, string>>,
): Promise<Hop> {
  if (!FETCHABLE_PROTOCOLS.has(target.url.protocol)) {
    throw new InvalidInputError(`web-download cannot fetch ${target.url.protocol} URIs`);
  }
  const { url, authorization } = withoutCredentials(target.url);
  const connection: ConnectionWatch = { sentPastResponse: false };
  const agent = pinnedAgent(target.addresses, options.connectTimeoutMs, connection);
  const headers: Record<string, string> = {
    ...extraHeaders,
    // The bytes are the image: a content encoding such as gzip would change them.
    'accept-encoding': 'identity',
    'user-agent': 'glimpse-web-download',
  };
  if (authorization !== null) headers.authorization = authorization;
  try {
    const response = await undici().request(url, {
      dispatcher: agent,
      method: 'GET',
      headers,
      headersTimeout: options.readTimeoutMs,
      // The body's idle time is measured by readBody, which only counts while it waits: a
      // slow consumer (a store write) must not look like a stalled server.
      bodyTimeout: 0,
    });
    return { uri, response, agent, connection };
  } catch (error) {
    await agent.destroy();
    throw error;
  }
}

/**
 * The socket's lookup answers with the addresses the filter accepted, and never asks DNS. The
 * socket is watched for data past the response (see ConnectionWatch).
 */
function pinnedAgent(
  addresses: ResolvedAddress[],
  connectTimeoutMs: number,
  connection: ConnectionWatch,
): Agent {
  const lookup: LookupFunction = (_hostname, lookupOptions, callback) => {
    const first = addresses[0];
    if (lookupOptions.all === true) {
      callback(
        null,
        addresses.map(({ address, family }) => ({ address, family })),
      );
    } else if (first) {
      callback(null, first.address, first.family);
    } else {
      callback(Object.assign(new Error('no accepted address'), { code: 'ENOTFOUND' }), '');
    }
  };
  // autoSelectFamily tries every accepted address (happy eyeballs), e.g. ::1 then 127.0.0.1.
  const connect = undici().buildConnector({
    lookup,
    timeout: connectTimeoutMs,
    autoSelectFamily: true,
  });
  return new (undici().Agent)({ connect: watching(connect, connection), connections: 1 });
}

/**
 * undici frames a body by its Content-Length and takes any bytes after it for a response
 * nobody asked for: it closes the connection with an error that only the socket sees, while
 * the body it hands over looks complete. The socket's errors tell those bytes apart.
 */
function watching(
  connect: buildConnector.connector,
  connection: ConnectionWatch,
): buildConnector.connector {
  return (options, callback) =>
    connect(options, (...result) => {
      result[1]?.on('error', (error: NodeJS.ErrnoException) => {
        if (isUnaskedResponse(error)) connection.sentPastResponse = true;
      });
      callback(...result);
    });
}

/** undici's errors for bytes that arrive while no request is waiting for a response. */
function isUnaskedResponse(error: NodeJS.ErrnoException): boolean {
  if (error.code?.startsWith('HPE_')) return true;
  return error.code === 'UND_ERR_SOCKET' && error.message === 'bad response';
}

/**
 * Credentials travel in an Authorization header, not in the URL, and only to the host the URI
 * that carried them names: a redirect elsewhere does not inherit them.
 */
function withoutCredentials(url: URL): { url: URL; authorization: string | null } {
  if (url.username === '' && url.password === '') return { url, authorization: null };
  const bare = new URL(url.href);
  bare.username = '';
  bare.password = '';
  const pair = `${percentDecode(url.username)}:${percentDecode(url.password)}`;
  return { url: bare, authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
}

function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function redirectLocation(response: Dispatcher.ResponseData): string | null {
  if (!REDIRECT_STATUSES.has(response.statusCode)) return null;
  const location = response.headers.location;
  return typeof location === 'string' && location.trim() !== '' ? location.trim() : null;
}

/**
 * An absolute Location is checked exactly as sent, not after the WHATWG parser has rewritten
 * an encoded host such as `0x7f.1` into a canonical address; a relative one keeps the host.
 */
function resolveLocation(location: string, base: URL): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) return location;
  if (location.startsWith('//')) return `${base.protocol}${location}`;
  return new URL(location, base).href;
}

async function closeHop(hop: Hop): Promise<void> {
  // Destroying an unfinished body makes undici emit an abort error, which nobody needs.
  hop.response.body.on('error', () => {});
  hop.response.body.destroy();
  await hop.agent.destroy();
}

async function openBody(hop: Hop, options: WebSourceOptions): Promise<WebSource> {
  const { statusCode, headers } = hop.response;
  if (statusCode < 200 || statusCode > 299) {
    await closeHop(hop);
    throw new WebSourceHttpError(statusCode, hop.uri);
  }
  const contentLength = parseContentLength(headers['content-length']);
  return { body: readBody(hop, contentLength, options.readTimeoutMs), contentLength };
}

function parseContentLength(value: string | string[] | undefined): number | null {
  if (typeof value !== 'string' || !/^\d+$/.test(value.trim())) return null;
  const length = Number(value.trim());
  return Number.isSafeInteger(length) ? length : null;
}

async function* readBody(
  hop: Hop,
  expected: number | null,
  readTimeoutMs: number,
): AsyncGenerator<Buffer, void, undefined> {
  const body = hop.response.body;
  const chunks: AsyncIterator<unknown> = body[Symbol.asyncIterator]();
  let received = 0;
  try {
    for (;;) {
      const next = await nextChunk(chunks, readTimeoutMs, received, expected);
      if (next.done === true) break;
      const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(String(next.value));
      received += chunk.length;
      // undici ends an HTTP/1.1 body at its Content-Length; this holds where it does not.
      if (expected !== null && received > expected) throw tooLong(expected);
      yield chunk;
    }
    if (expected !== null) await checkLength(hop, received, expected);
  } finally {
    await closeHop(hop);
  }
}

/** The whole body was as long as announced: not shorter, and not followed by more bytes. */
async function checkLength(hop: Hop, received: number, expected: number): Promise<void> {
  if (received !== expected) {
    throw new Error(`web-download source sent ${received} of its ${expected} bytes`);
  }
  // Bytes sent right behind the body have reached the socket after one more turn of the event
  // loop; any sent later go unnoticed, as nothing tells them from the start of a reply.
  await nextTurn();
  if (hop.connection.sentPastResponse) throw tooLong(expected);
}

function tooLong(expected: number): Error {
  return new Error(`web-download source sent more than its Content-Length of ${expected} bytes`);
}

/** The next chunk, or an error once the source has been silent for `readTimeoutMs`. */
async function nextChunk(
  chunks: AsyncIterator<unknown>,
  readTimeoutMs: number,
  received: number,
  expected: number | null,
): Promise<IteratorResult<unknown>> {
  let timer: NodeJS.Timeout | undefined;
  const silence = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no data for ${readTimeoutMs} ms`));
    }, readTimeoutMs);
  });
  const pending = chunks.next();
  // After a timeout the stream is destroyed and this read fails; nobody waits for it then.
  pending.catch(() => {});
  try {
    return await Promise.race([pending, silence]).catch((error: unknown) => {
      throw readFailure(error, received, expected);
    });
  } finally {
    clearTimeout(timer);
  }
}

function readFailure(error: unknown, received: number, expected: number | null): Error {
  const reason = error instanceof Error ? error.message : String(error);
  const of = expected === null ? '' : ` of ${expected}`;
  return new Error(`web-download failed after ${received}${of} bytes: ${reason}`, {
    cause: error,
  });
}
