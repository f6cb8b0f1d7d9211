/**
 * Kills a real Glimpse process with SIGKILL in the middle of a data write and checks what the
 * next process finds: the image queued again, no leftover bytes in the store, and data that
 * was already committed untouched. Runs on SQLite and, when reachable, on PostgreSQL, where a
 * second process sharing the database also takes over the recovery.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';

import { testDatabases } from '../support/databases.js';
import { assertActiveWith } from '../support/imports.js';
import {
  api,
  createImage,
  digest,
  download,
  exists,
  getImage,
  partialFiles,
  partialHoldsData,
  prepareSite,
  serverLog,
  waitFor,
} from '../support/process-site.js';
import type { ImageBody, Site } from '../support/process-site.js';
import { killServer } from '../support/server-process.js';
import type { ServerProcess } from '../support/server-process.js';

/** What an interrupted upload announces; far more than it ever sends. */
const DECLARED_SIZE = 200 * 1024 * 1024;
/** Sent at once, so that the store has flushed data to its partial file before the kill. */
const FIRST_BURST = 2 * 1024 * 1024;
const TRICKLE_CHUNK = 64 * 1024;
const TRICKLE_EVERY_MS = 20;
const WAIT_TIMEOUT_MS = 15_000;
/** How soon a surviving process with a 1 s heartbeat must undo a dead process's write. */
const TAKEOVER_TIMEOUT_MS = 5_000;
const TEST_TIMEOUT_MS = 120_000;
const SITE = { prefix: 'glimpse-crash-' };

/** A write that a kill interrupts: the image's resource it goes to, its status meanwhile. */
interface Write {
  readonly resource: 'file' | 'stage';
  readonly status: string;
  /** The directory, under the data directory, of the store it writes to. */
  readonly store: string;
}
const UPLOAD: Write = { resource: 'file', status: 'saving', store: 'images' };
const STAGING: Write = { resource: 'stage', status: 'uploading', store: 'staging' };

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
        const site = await prepareSite(t, database, SITE);
        const { id, next: second } = await interruptWrite(t, site, UPLOAD);
        const image = await getImage(second, id);
        assert.equal(image.status, 'queued', serverLog(second));
        assert.equal(image.size, null);
        assert.equal(image.checksum, null);
        assert.deepEqual(await partialFiles(join(site.dataDir, 'images'), id), []);
        assert.equal(await exists(join(site.dataDir, 'images', id)), false);

        const data = randomBytes(3 * 1024 * 1024);
        await uploadAll(second, id, data);
        assertActiveWith(await getImage(second, id), data);
        assert.equal(digest('sha512', await download(second, id)), digest('sha512', data));
      },
    );

    it(
      'staging killed midway leaves the image queued with nothing staged',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const site = await prepareSite(t, database, SITE);
        const staging = join(site.dataDir, 'staging');
        const { id, next: second } = await interruptWrite(t, site, STAGING);
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
        const site = await prepareSite(t, database, SITE);
        const first = await site.start();
        const id = await createImage(first, 'crash-test');
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
        const site = await prepareSite(t, database, SITE);
        const heartbeat = { GLIMPSE_WORKER_HEARTBEAT_SECONDS: '1' };
        const doomed = await site.start(heartbeat);
        const survivor = await site.start(heartbeat);
        const id = await createImage(survivor, 'crash-test');
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
// Writes and kills

/** Starts a server, kills it in the middle of the write and starts the next one. */
async function interruptWrite(
  t: TestContext,
  site: Site,
  write: Write,
): Promise<{ id: string; next: ServerProcess }> {
  const first = await site.start();
  const id = await createImage(first, 'crash-test');
  const upload = startSlowUpload(t, first, `/v2/images/${id}/${write.resource}`);
  await waitForWrite(first, upload, id, write.status, join(site.dataDir, write.store));
  await killServer(first);
  upload.stop();
  return { id, next: await site.start() };
}

async function uploadAll(server: ServerProcess, id: string, data: Buffer): Promise<void> {
  const response = await api(server, 'PUT', `/v2/images/${id}/file`, data);
  assert.equal(response.status, 204, `${await response.text()}\n${serverLog(server)}`);
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
      return (await partialHoldsData(root, id)) ? true : null;
    },
    () => serverLog(server),
  );
}
