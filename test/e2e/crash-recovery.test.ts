/**
 * Kills a real Glimpse process with SIGKILL in the middle of a data write and checks what the
 * next process finds: the image queued again, no leftover bytes in the store, and data that
 * was already committed untouched. Runs on SQLite and, when reachable, on PostgreSQL, where a
 * second process sharing the database also takes over the recovery.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';

import { testDatabases } from '../support/databases.js';
import type { TestDatabase } from '../support/databases.js';
import { killServer, startServer, stopServer } from '../support/server-process.js';
import type { ServerProcess } from '../support/server-process.js';

/** What an interrupted upload announces; far more than it ever sends. */
const DECLARED_SIZE = 200 * 1024 * 1024;
/** Sent at once, so that the store has flushed data to its partial file before the kill. */
const FIRST_BURST = 2 * 1024 * 1024;
const TRICKLE_CHUNK = 64 * 1024;
const TRICKLE_EVERY_MS = 20;
const REQUEST_TIMEOUT_MS = 30_000;
const WAIT_TIMEOUT_MS = 15_000;
/** How soon a surviving process with a 1 s heartbeat must undo a dead process's write. */
const TAKEOVER_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT_MS = 120_000;

interface ImageBody {
  readonly id: string;
  readonly status: string;
  readonly size: number | null;
  readonly checksum: string | null;
  readonly os_hash_algo: string | null;
  readonly os_hash_value: string | null;
}

/** A data directory and a database that servers are started on, and restarted on. */
interface Site {
  readonly dataDir: string;
  start(env?: Readonly<Record<string, string>>): Promise<ServerProcess>;
}

/** An upload that sends slowly and never finishes on its own. */
interface SlowUpload {
  /** How the request ended (answer or error), or null while it is still sending. */
  outcome(): string | null;
  stop(): void;
}

for (const database of await testDatabases()) {
  describe(`crash recovery on ${database.name}`, { skip: database.skip ?? false }, () => {
    it(
      'an upload killed midway leaves the image queued, with no data, ready for a new upload',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const site = await prepareSite(t, database);
        const first = await site.start();
        const id = await createImage(first);

        const upload = startSlowUpload(t, first, `/v2/images/${id}/file`);
        await waitForWrite(first, upload, id, 'saving', join(site.dataDir, 'images'));
        await killServer(first);
        upload.stop();

        const second = await site.start();
        const image = await getImage(second, id);
        assert.equal(image.status, 'queued', serverLog(second));
        assert.equal(image.size, null);
        assert.equal(image.checksum, null);
        assert.deepEqual(await partialFiles(join(site.dataDir, 'images'), id), []);
        assert.equal(await exists(join(site.dataDir, 'images', id)), false);

        const data = randomBytes(3 * 1024 * 1024);
        await uploadAll(second, id, data);
        const active = await getImage(second, id);
        assert.equal(active.status, 'active');
        assert.equal(active.size, data.length);
        assert.equal(active.checksum, digest('md5', data));
        assert.equal(active.os_hash_algo, 'sha512');
        assert.equal(active.os_hash_value, digest('sha512', data));
        assert.equal(digest('sha512', await download(second, id)), digest('sha512', data));
      },
    );

    it(
      'staging killed midway leaves the image queued with nothing staged',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const site = await prepareSite(t, database);
        const first = await site.start();
        const id = await createImage(first);
        const staging = join(site.dataDir, 'staging');

        const upload = startSlowUpload(t, first, `/v2/images/${id}/stage`);
        await waitForWrite(first, upload, id, 'uploading', staging);
        await killServer(first);
        upload.stop();

        const second = await site.start();
        const image = await getImage(second, id);
        assert.equal(image.status, 'queued', serverLog(second));
        assert.equal(image.size, null);
        assert.deepEqual(await partialFiles(staging, id), []);
        assert.equal(await exists(join(staging, id)), false);

        // The image can be staged again.
        const data = randomBytes(1024 * 1024);
        const response = await api(second, 'PUT', `/v2/images/${id}/stage`, data);
        assert.equal(response.status, 204, await response.text());
        assert.equal((await getImage(second, id)).status, 'uploading');
        assert.equal((await stat(join(staging, id))).size, data.length);
      },
    );

    it(
      'an active image survives a SIGKILL and restart intact',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const site = await prepareSite(t, database);
        const first = await site.start();
        const id = await createImage(first);
        const data = randomBytes(4 * 1024 * 1024);
        await uploadAll(first, id, data);
        const before = await getImage(first, id);
        assert.equal(before.status, 'active');

        await killServer(first);
        const second = await site.start();

        const after = await getImage(second, id);
        assert.deepEqual(pickData(after), pickData(before), serverLog(second));
        assert.equal(after.checksum, digest('md5', data));
        const downloaded = await download(second, id);
        assert.equal(downloaded.length, data.length);
        assert.equal(digest('sha512', downloaded), digest('sha512', data));
      },
    );

    it(
      'a process sharing the database undoes the write of a killed process on its own',
      {
        timeout: TEST_TIMEOUT_MS,
        skip: database.name === 'sqlite' ? 'two processes need a shared PostgreSQL' : false,
      },
      async (t) => {
        const site = await prepareSite(t, database);
        const heartbeat = { GLIMPSE_WORKER_HEARTBEAT_SECONDS: '1' };
        const doomed = await site.start(heartbeat);
        const survivor = await site.start(heartbeat);
        const id = await createImage(survivor);
        const store = join(site.dataDir, 'images');

        const upload = startSlowUpload(t, doomed, `/v2/images/${id}/file`);
        await waitForWrite(doomed, upload, id, 'saving', store);
        // The survivor sees the write in progress and leaves it alone while its writer lives.
        assert.equal((await getImage(survivor, id)).status, 'saving');
        await killServer(doomed);
        upload.stop();

        const image = await waitFor(
          `${id} to be queued again by the surviving process`,
          TAKEOVER_TIMEOUT_MS,
          async () => {
            const current = await getImage(survivor, id);
            return current.status === 'queued' ? current : null;
          },
          () => serverLog(survivor),
        );
        assert.equal(image.size, null);
        assert.deepEqual(await partialFiles(store, id), []);
        assert.equal(await exists(join(store, id)), false);

        const data = randomBytes(1024 * 1024);
        await uploadAll(survivor, id, data);
        assert.equal((await getImage(survivor, id)).checksum, digest('md5', data));
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Sites and servers

/** A fresh data directory and database; every server started on it is stopped after t. */
async function prepareSite(t: TestContext, database: TestDatabase): Promise<Site> {
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-crash-'));
  const db = await database.create();
  const servers: ServerProcess[] = [];
  t.after(async () => {
    for (const server of servers) await stopServer(server);
    await db.drop();
    await rm(dataDir, { recursive: true, force: true });
  });
  const databaseEnv: Record<string, string> = db.url ? { GLIMPSE_DATABASE_URL: db.url } : {};

  return {
    dataDir,
    async start(env = {}) {
      const server = await startServer({ dataDir, env: { ...databaseEnv, ...env } });
      servers.push(server);
      return server;
    },
  };
}

function serverLog(server: ServerProcess): string {
  return `glimpse output (tail):\n${server.output().slice(-4000)}`;
}

// ---------------------------------------------------------------------------------------------
// The API

async function api(
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

async function createImage(server: ServerProcess): Promise<string> {
  const response = await api(server, 'POST', '/v2/images', {
    name: 'crash-test',
    disk_format: 'raw',
    container_format: 'bare',
  });
  const text = await response.text();
  assert.equal(response.status, 201, text);
  return (JSON.parse(text) as ImageBody).id;
}

async function getImage(server: ServerProcess, id: string): Promise<ImageBody> {
  const response = await api(server, 'GET', `/v2/images/${id}`);
  const text = await response.text();
  assert.equal(response.status, 200, `GET /v2/images/${id}: ${text}\n${serverLog(server)}`);
  return JSON.parse(text) as ImageBody;
}

async function uploadAll(server: ServerProcess, id: string, data: Buffer): Promise<void> {
  const response = await api(server, 'PUT', `/v2/images/${id}/file`, data);
  assert.equal(response.status, 204, `${await response.text()}\n${serverLog(server)}`);
}

async function download(server: ServerProcess, id: string): Promise<Buffer> {
  const response = await api(server, 'GET', `/v2/images/${id}/file`);
  assert.equal(response.status, 200, serverLog(server));
  return Buffer.from(await response.arrayBuffer());
}

function pickData(image: ImageBody): Partial<ImageBody> {
  const { status, size, checksum, os_hash_algo, os_hash_value } = image;
  return { status, size, checksum, os_hash_algo, os_hash_value };
}

/**
 * Starts a PUT of image data that declares DECLARED_SIZE bytes, sends a first burst, then
 * trickles the rest slowly, so that a test can kill the server while it is receiving.
 */
function startSlowUpload(t: TestContext, server: ServerProcess, path: string): SlowUpload {
  let outcome: string | null = null;
  const request = httpRequest(new URL(path, server.url), {
    method: 'PUT',
    headers: {
      'content-type': 'application/octet-stream',
      'content-length': String(DECLARED_SIZE),
    },
  });
  request.on('response', (response) => {
    outcome ??= `answered ${response.statusCode}`;
    response.on('error', () => undefined);
    response.resume();
  });
  // Expected once the server is killed: the connection resets.
  request.on('error', (error) => {
    outcome ??= `failed: ${error.message}`;
  });

  let sent = 0;
  const send = (chunk: Buffer) => {
    if (sent + chunk.length > DECLARED_SIZE || request.writableNeedDrain) return;
    request.write(chunk);
    sent += chunk.length;
  };
  send(randomBytes(FIRST_BURST));
  const chunk = randomBytes(TRICKLE_CHUNK);
  const timer = setInterval(() => send(chunk), TRICKLE_EVERY_MS);

  const stop = () => {
    clearInterval(timer);
    request.destroy();
  };
  t.after(stop);
  return { outcome: () => outcome, stop };
}

/**
 * Waits until the image is in the write's status and the store under root holds a partial
 * file with data in it: the write is well under way.
 */
async function waitForWrite(
  server: ServerProcess,
  upload: SlowUpload,
  id: string,
  status: string,
  root: string,
): Promise<void> {
  await waitFor(
    `a ${status} write of ${id} with data in ${root}/.partial`,
    WAIT_TIMEOUT_MS,
    async () => {
      const ended = upload.outcome();
      if (ended !== null) throw new Error(`the upload ended early (${ended})`);
      if ((await getImage(server, id)).status !== status) return null;
      const sizes = await Promise.all(
        (await partialFiles(root, id)).map(async (name) => (await stat(name)).size),
      );
      return sizes.some((size) => size > 0) ? true : null;
    },
    () => serverLog(server),
  );
}

// ---------------------------------------------------------------------------------------------
// Files and waiting

/** Paths of the partial files of image id in the store rooted at root. */
async function partialFiles(root: string, id: string): Promise<string[]> {
  const dir = join(root, '.partial');
  const names = await readdir(dir);
  return names.filter((name) => name.startsWith(`${id}.`)).map((name) => join(dir, name));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

function digest(algorithm: string, data: Buffer): string {
  return createHash(algorithm).update(data).digest('hex');
}

/** Polls check until it returns non-null; fails after timeoutMs. */
async function waitFor<T>(
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
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
