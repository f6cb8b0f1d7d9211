/**
 * For end-to-end suites that kill Glimpse processes and start new ones on the same data: a
 * site (data directory and database) to start them on, the images API of a process, and
 * what a write leaves in a store.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import type { TestDatabase } from './databases.js';
import { startServer, stopServer } from './server-process.js';
import type { ServerProcess } from './server-process.js';

const REQUEST_TIMEOUT_MS = 30_000;

export interface ImageBody {
  readonly id: string;
  readonly status: string;
  readonly size: number | null;
  readonly checksum: string | null;
  readonly os_hash_algo: string | null;
  readonly os_hash_value: string | null;
  readonly [property: string]: unknown;
}

// ---------------------------------------------------------------------------------------------
// Sites and servers

/** A data directory and a database that servers are started on, and restarted on. */
export interface Site {
  readonly dataDir: string;
  start(env?: Readonly<Record<string, string>>): Promise<ServerProcess>;
}

export interface SiteOptions {
  /** Starts the name of the temporary data directory, to tell the suites' leftovers apart. */
  readonly prefix: string;
  /** Settings every server of the site gets; start(env) adds to them. */
  readonly env?: Readonly<Record<string, string>>;
}

/** A fresh data directory and database; every server started on it is stopped after t. */
export async function prepareSite(
  t: TestContext,
  database: TestDatabase,
  options: SiteOptions,
): Promise<Site> {
  const dataDir = await mkdtemp(join(tmpdir(), options.prefix));
  const db = await database.create();
  const servers: ServerProcess[] = [];
  t.after(async () => {
    for (const server of servers) await stopServer(server);
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });
  const siteEnv = { ...(db.url ? { GLIMPSE_DATABASE_URL: db.url } : {}), ...options.env };

  return {
    dataDir,
    async start(env = {}) {
      const server = await startServer({ dataDir, env: { ...siteEnv, ...env } });
      servers.push(server);
      return server;
    },
  };
}

export function serverLog(server: ServerProcess): string {
  return `glimpse output (tail):\n${server.output().slice(-4000)}`;
}

// ---------------------------------------------------------------------------------------------
// The API

/** A request with a JSON body, or image data when body is a Buffer. */
export async function api(
  server: ServerProcess,
  method: string,
  path: string,
  body?: Buffer | Record<string, unknown>,
): Promise<Response> {
  const isData = Buffer.isBuffer(body);
  const headers: Record<string, string> = {};
  if (body !== undefined) {
    headers['content-type'] = isData ? 'application/octet-stream' : 'application/json';
  }
  return fetch(new URL(path, server.url), {
    method,
    headers,
    body: body === undefined ? undefined : isData ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/** A raw/bare image without data; its id. */
export async function createImage(server: ServerProcess, name: string): Promise<string> {
  const body = { name, disk_format: 'raw', container_format: 'bare' };
  const response = await api(server, 'POST', '/v2/images', body);
  const text = await response.text();
  assert.equal(response.status, 201, text);
  return (JSON.parse(text) as ImageBody).id;
}

export async function getImage(server: ServerProcess, id: string): Promise<ImageBody> {
  const response = await api(server, 'GET', `/v2/images/${id}`);
  const text = await response.text();
  assert.equal(response.status, 200, `GET /v2/images/${id}: ${text}\n${serverLog(server)}`);
  return JSON.parse(text) as ImageBody;
}

export async function download(server: ServerProcess, id: string): Promise<Buffer> {
  const response = await api(server, 'GET', `/v2/images/${id}/file`);
  assert.equal(response.status, 200, serverLog(server));
  return Buffer.from(await response.arrayBuffer());
}

// ---------------------------------------------------------------------------------------------
// Files, digests and waiting

/** Paths of the partial files of image id in the store rooted at root. */
export async function partialFiles(root: string, id: string): Promise<string[]> {
  const dir = join(root, '.partial');
  // A store that never wrote has no .partial directory, and so no partial files.
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((name) => name.startsWith(`${id}.`)).map((name) => join(dir, name));
}

/** Whether a partial file of image id in the store rooted at root holds data yet. */
export async function partialHoldsData(root: string, id: string): Promise<boolean> {
  const files = await Promise.all((await partialFiles(root, id)).map((path) => stat(path)));
  return files.some((file) => file.size > 0);
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

export function digest(algorithm: string, data: Buffer): string {
  return createHash(algorithm).update(data).digest('hex');
}

/** Polls check until it returns non-null; fails after timeoutMs. */
export async function waitFor<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null>,
  context: () => string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result !== null) return result;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    }
    await sleep(100);
  }
}
