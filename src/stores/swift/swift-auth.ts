/**
 * Logging in to Swift: a token and the storage URL it is good for.
 *
 * - Version 1 (tempauth, swauth): GET the auth URL with X-Auth-User and X-Auth-Key; the answer
 *   carries X-Auth-Token, X-Storage-Url and, from tempauth, X-Auth-Token-Expires (seconds).
 * - Version 3 (Keystone): password authentication scoped to a project; the storage URL is the
 *   object-store endpoint of the token's catalog with the configured interface and region.
 */
import type { Dispatcher } from 'undici';

import { undici } from '../../net/undici.js';
import { StoreUnavailableError } from '../store.js';
import type { SwiftStoreOptions } from './swift-config.js';

export interface SwiftSession {
  readonly token: string;
  /** The account URL, e.g. http://127.0.0.1:8080/v1/AUTH_test, without a trailing slash. */
  readonly storageUrl: string;
  /** Epoch milliseconds after which the token is not to be used. */
  readonly expiresAt: number;
}

export interface AuthTransport {
  readonly dispatcher: Dispatcher;
  readonly requestTimeoutMs: number;
}

/** A token without a stated lifetime is renewed after this long. */
const DEFAULT_LIFETIME_MS = 60 * 60_000;

interface TokenBody {
  token?: {
    expires_at?: string;
    catalog?: Array<{
      type?: string;
      endpoints?: Array<{ interface?: string; region?: string; region_id?: string; url?: string }>;
    }>;
  };
}

export async function authenticate(
  options: SwiftStoreOptions,
  transport: AuthTransport,
): Promise<SwiftSession> {
  return options.authVersion === '1'
    ? authenticateV1(options, transport)
    : authenticateV3(options, transport);
}

async function authenticateV1(
  options: SwiftStoreOptions,
  transport: AuthTransport,
): Promise<SwiftSession> {
  const response = await send(options, transport, 'GET', options.authUrl, {
    'x-auth-user': options.user,
    'x-auth-key': options.key,
  });
  const text = await response.body.text();
  refuseFailure(options, response.statusCode, text);
  const token = header(response, 'x-auth-token');
  const storageUrl = header(response, 'x-storage-url');
  if (!token || !storageUrl) {
    throw new StoreUnavailableError(
      `Swift store ${options.id}: ${options.authUrl} answered without a token or storage URL`,
    );
  }
  const seconds = Number(header(response, 'x-auth-token-expires'));
  const lifetime = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : DEFAULT_LIFETIME_MS;
  return { token, storageUrl: storageUrl.replace(/\/+$/, ''), expiresAt: Date.now() + lifetime };
}

async function authenticateV3(
  options: SwiftStoreOptions,
  transport: AuthTransport,
): Promise<SwiftSession> {
  const base = /\/v3$/.test(options.authUrl) ? options.authUrl : `${options.authUrl}/v3`;
  const response = await send(
    options,
    transport,
    'POST',
    `${base}/auth/tokens`,
    { 'content-type': 'application/json', accept: 'application/json' },
    JSON.stringify({ auth: passwordAuth(options) }),
  );
  const text = await response.body.text();
  refuseFailure(options, response.statusCode, text);
  const token = header(response, 'x-subject-token');
  let body: TokenBody = {};
  try {
    body = JSON.parse(text) as TokenBody;
  } catch {
    body = {};
  }
  if (!token) {
    throw new StoreUnavailableError(`Swift store ${options.id}: Keystone issued no token`);
  }
  const expiresAt = Date.parse(body.token?.expires_at ?? '') || Date.now() + DEFAULT_LIFETIME_MS;
  return { token, storageUrl: catalogEndpoint(options, body), expiresAt };
}

function passwordAuth(options: SwiftStoreOptions): Record<string, unknown> {
  return {
    identity: {
      methods: ['password'],
      password: {
        user: {
          name: options.user,
          domain: { name: options.userDomainName ?? 'Default' },
          password: options.key,
        },
      },
    },
    scope: {
      project: {
        name: options.projectName,
        domain: { name: options.projectDomainName ?? 'Default' },
      },
    },
  };
}

function catalogEndpoint(options: SwiftStoreOptions, body: TokenBody): string {
  const serviceType = options.serviceType ?? 'object-store';
  const wanted = options.endpointType ?? 'public';
  const endpoints = (body.token?.catalog ?? [])
    .filter((service) => service.type === serviceType)
    .flatMap((service) => service.endpoints ?? []);
  const found = endpoints.find(
    (endpoint) =>
      endpoint.interface === wanted &&
      (options.region === undefined ||
        endpoint.region_id === options.region ||
        endpoint.region === options.region),
  );
  if (!found?.url) {
    const region = options.region === undefined ? '' : ` in region ${options.region}`;
    throw new StoreUnavailableError(
      `Swift store ${options.id}: the Keystone catalog has no ${wanted} ${serviceType} ` +
        `endpoint${region}`,
    );
  }
  return found.url.replace(/\/+$/, '');
}

async function send(
  options: SwiftStoreOptions,
  transport: AuthTransport,
  method: 'GET' | 'POST',
  url: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Dispatcher.ResponseData> {
  try {
    return await undici().request(url, {
      dispatcher: transport.dispatcher,
      method,
      headers,
      body,
      headersTimeout: transport.requestTimeoutMs,
      bodyTimeout: transport.requestTimeoutMs,
    });
  } catch (error) {
    throw new StoreUnavailableError(
      `Swift store ${options.id}: authentication at ${url} failed: ${describe(error)}`,
      { cause: error },
    );
  }
}

function refuseFailure(options: SwiftStoreOptions, status: number, text: string): void {
  if (status >= 200 && status < 300) return;
  const reason =
    status === 401 || status === 403
      ? 'the credentials were refused'
      : `answered ${status} ${text.slice(0, 200)}`.trim();
  throw new StoreUnavailableError(
    `Swift store ${options.id}: authentication at ${options.authUrl}: ${reason}`,
  );
}

function header(response: Dispatcher.ResponseData, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** An error's code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT...) or message. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  const cause = error.cause instanceof Error ? `: ${describe(error.cause)}` : '';
  return `${code && !error.message.includes(code) ? `${code} ` : ''}${error.message}${cause}`;
}
