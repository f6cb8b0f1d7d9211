/**
 * The shared import queue with real Glimpse processes: a web-download import whose process is
 * killed with SIGKILL is taken up again by the next process (and given up after three tries),
 * and on PostgreSQL two processes sharing one database and data directory run every queued
 * import exactly once. The web-download source is a node:http server in the test process that
 * counts the requests it gets for each path.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { TestContext } from 'node:test';

import { testDatabases } from '../support/databases.js';
import { assertActiveWith, assertImportBookkeeping } from '../support/imports.js';
import type { TestDatabase } from '../support/databases.js';
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
import type { Site } from '../support/process-site.js';
import { killServer } from '../support/server-process.js';
import type { ServerProcess } from '../support/server-process.js';
import { RouteServer } from '../support/web-server.js';

const MiB = 1024 * 1024;
/** The body of an interrupted import, and what is sent of it before the source holds. */
const SLOW_SIZE = 6 * MiB;
/** Over the staging store's 1 MiB write block, so that the partial file holds data. */
const FIRST_PART = 2 * MiB;
/** Until a download is well under way, or a task has finished. */
const WAIT_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 180_000;
const QUEUED_IMPORTS = 20;

interface TaskRow {
  readonly id: string;
  readonly status: string;
  readonly message: string;
  readonly result: Record<string, unknown> | null;
}

const sha512 = (data: Buffer) => digest('sha512', data);

// ---------------------------------------------------------------------------------------------
// The web-download source

/** A web-download source whose importers a test kills midway. */
class Source extends RouteServer {
  static async start(t: TestContext): Promise<Source> {
    const source = await new Source().listen();
    t.after(() => source.close());
    return source;
  }

  /** Serves data, after delayMs, to requests later than the first `stalled` ones. */
  serve(path: string, data: Buffer, options: { stalled?: number; delayMs?: number } = {}) {
    return this.route(path, (_request, response, hit) => {
      // A killed importer resets the connection; that is expected here.
      response.on('error', () => undefined);
      response.writeHead(200, { 'content-length': String(data.length) });
      // A stalled request gets the first part, then nothing: its importer is to be killed.
      if (hit <= (options.stalled ?? 0)) {
        response.write(data.subarray(0, FIRST_PART));
        return;
      }
      const delay = options.delayMs ?? 0;
      setTimeout(() => response.end(data), delay).unref();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Sites and servers

/**
 * A fresh site whose servers may download from source, and soon take over the tasks of a
 * killed process.
 */
function prepareSourceSite(t: TestContext, database: TestDatabase, source: Source) {
  return prepareSite(t, database, {
    prefix: 'glimpse-import-queue-',
    env: {
      GLIMPSE_WORKER_HEARTBEAT_SECONDS: '1',
      GLIMPSE_ALLOWED_HOSTS: '127.0.0.1',
      GLIMPSE_ALLOWED_PORTS: `80,443,${source.port}`,
    },
  });
}

// ---------------------------------------------------------------------------------------------
// The API

async function webDownload(server: ServerProcess, id: string, uri: string): Promise<void> {
  const body = { method: { name: 'web-download', uri } };
  const response = await api(server, 'POST', `/v2/images/${id}/import`, body);
  assert.equal(response.status, 202, `${await response.text()}\n${serverLog(server)}`);
}

async function tasksOf(server: ServerProcess, id: string): Promise<TaskRow[]> {
  const response = await api(server, 'GET', `/v2/images/${id}/tasks`);
  const text = await response.text();
  assert.equal(response.status, 200, `${text}\n${serverLog(server)}`);
  return (JSON.parse(text) as { tasks: TaskRow[] }).tasks;
}

/** The image's only task, once it has finished. */
async function finishedTask(server: ServerProcess, id: string): Promise<TaskRow> {
  return waitFor(
    `the import task of ${id} to finish`,
    WAIT_TIMEOUT_MS,
    async () => {
      const tasks = await tasksOf(server, id);
      assert.equal(tasks.length, 1, `one task per import: ${JSON.stringify(tasks)}`);
      const [task] = tasks;
      return task && (task.status === 'success' || task.status === 'failure') ? task : null;
    },
    () => serverLog(server),
  );
}

/** Waits until the image is importing and its download has put data in staging. */
async function waitForDownload(
  server: ServerProcess,
  site: Site,
  source: Source,
  path: string,
  id: string,
  hit: number,
): Promise<void> {
  await waitFor(
    `request ${hit} of ${path} to stage data of ${id}`,
    WAIT_TIMEOUT_MS,
    async () => {
      if (source.hits(path) < hit) return null;
      if ((await getImage(server, id)).status !== 'importing') return null;
      const [task] = await tasksOf(server, id);
      if (task?.status !== 'processing') return null;
      return (await partialHoldsData(join(site.dataDir, 'staging'), id)) ? true : null;
    },
    () => serverLog(server),
  );
}

// ---------------------------------------------------------------------------------------------
// What an import leaves

/** Staged and partial files of the image: none may outlive its import. */
async function leftovers(site: Site, id: string): Promise<string[]> {
  const staging = join(site.dataDir, 'staging');
  const staged = join(staging, id);
  return [
    ...((await exists(staged)) ? [staged] : []),
    ...(await partialFiles(staging, id)),
    ...(await partialFiles(join(site.dataDir, 'images'), id)),
  ];
}

async function assertActive(server: ServerProcess, site: Site, id: string, data: Buffer) {
  const image = await getImage(server, id);
  assertActiveWith(image, data, serverLog(server));
  assertImportBookkeeping(image);
  assert.equal(sha512(await download(server, id)), sha512(data));
  assert.deepEqual(await leftovers(site, id), []);
}

async function assertQueuedAndEmpty(server: ServerProcess, site: Site, id: string) {
  const image = await getImage(server, id);
  assert.equal(image.status, 'queued', serverLog(server));
  assert.equal(image.size, null);
  assert.equal(image.checksum, null);
  assertImportBookkeeping(image);
  assert.equal(await exists(join(site.dataDir, 'images', id)), false);
  assert.deepEqual(await leftovers(site, id), []);
}

// ---------------------------------------------------------------------------------------------
// The suites

for (const database of await testDatabases()) {
  describe(`import queue on ${database.name}`, { skip: database.skip ?? false }, () => {
    it(
      'a web-download killed midway is finished by the restarted process, never left importing',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const source = await Source.start(t);
        const site = await prepareSourceSite(t, database, source);
        const data = randomBytes(SLOW_SIZE);
        const uri = source.serve('/slow', data, { stalled: 1 });

        const first = await site.start();
        const id = await createImage(first, 'interrupted');
        await webDownload(first, id, uri);
        await waitForDownload(first, site, source, '/slow', id, 1);
        await killServer(first);

        const second = await site.start();
        const task = await finishedTask(second, id);
        if (task.status === 'success') {
          assert.deepEqual(task.result, { image_id: id });
          assert.equal(source.hits('/slow'), 2, 'downloaded again after the restart');
          await assertActive(second, site, id, data);
        } else {
          await assertQueuedAndEmpty(second, site, id);
        }
      },
    );

    it(
      'a web-download killed three times fails and leaves the image queued with nothing staged',
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const source = await Source.start(t);
        const site = await prepareSourceSite(t, database, source);
        const uri = source.serve('/always-killed', randomBytes(SLOW_SIZE), { stalled: 99 });

        let server = await site.start();
        const id = await createImage(server, 'doomed');
        await webDownload(server, id, uri);
        for (let attempt = 1; attempt <= 3; attempt += 1) {
          await waitForDownload(server, site, source, '/always-killed', id, attempt);
          await killServer(server);
          server = await site.start();
        }

        const task = await finishedTask(server, id);
        assert.equal(task.status, 'failure');
        assert.match(task.message, /interrupted 3 times/);
        assert.equal(task.result, null);
        assert.equal(source.hits('/always-killed'), 3, 'no fourth try');
        await assertQueuedAndEmpty(server, site, id);
      },
    );

    it(
      'a process sharing the database takes over the web-download of a killed process',
      {
        timeout: TEST_TIMEOUT_MS,
        skip: database.name === 'sqlite' ? 'two processes need a shared PostgreSQL' : false,
      },
      async (t) => {
        const source = await Source.start(t);
        const site = await prepareSourceSite(t, database, source);
        const data = randomBytes(SLOW_SIZE);
        const uri = source.serve('/taken-over', data, { stalled: 1 });

        // The survivor starts once the download runs, so the doomed process surely has it.
        const doomed = await site.start();
        const id = await createImage(doomed, 'taken-over');
        await webDownload(doomed, id, uri);
        await waitForDownload(doomed, site, source, '/taken-over', id, 1);
        const survivor = await site.start();
        assert.equal((await getImage(survivor, id)).status, 'importing');
        await killServer(doomed);

        const task = await finishedTask(survivor, id);
        assert.equal(task.status, 'success', task.message);
        assert.equal(source.hits('/taken-over'), 2);
        await assertActive(survivor, site, id, data);
      },
    );

    it(
      'two processes sharing the queue run each of 20 web-downloads exactly once',
      {
        timeout: TEST_TIMEOUT_MS,
        skip: database.name === 'sqlite' ? 'two processes need a shared PostgreSQL' : false,
      },
      async (t) => {
        const source = await Source.start(t);
        const site = await prepareSourceSite(t, database, source);
        const servers = [await site.start(), await site.start()];
        const imports = await Promise.all(
          Array.from({ length: QUEUED_IMPORTS }, async (_, n) => {
            const server = servers[n % 2] as ServerProcess;
            const path = `/queued-${n}`;
            const data = randomBytes(256 * 1024 + n);
            // Slow enough that both processes hold several tasks at once.
            const uri = source.serve(path, data, { delayMs: 150 });
            const id = await createImage(server, `queued-${n}`);
            return { server, path, data, id, uri };
          }),
        );
        await Promise.all(imports.map(({ server, id, uri }) => webDownload(server, id, uri)));

        for (const { server, path, data, id } of imports) {
          // Either process may have run it; both must tell the same outcome.
          const task = await finishedTask(server, id);
          assert.equal(task.status, 'success', `${path}: ${task.message}`);
          for (const viewer of servers) await assertActive(viewer, site, id, data);
        }
        for (const { path } of imports) assert.equal(source.hits(path), 1, `${path} requests`);
      },
    );
  });
}
