/**
 * Interoperable import through the API: glance-direct after staging and web-download from a
 * local HTTP source, the checks upstream makes before it accepts an import, the web-download
 * URI filter, failures of the task after the 202 (the image goes back to queued with nothing
 * staged or stored), the import lock, and the tasks API. Every finished import is checked for
 * the image's data and bookkeeping properties, its task row, and the staging area.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightMyRequestResponse } from 'fastify';

import type { OptionName } from '../../src/config/schema.js';
import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases, type TestDatabase } from '../support/databases.js';
import { buildBackedQcow2, qemuSkip } from '../support/images.js';
import {
  IMPORTING_TO,
  LOCK,
  assertActiveWith,
  assertImportBookkeeping,
  assertImportUndone,
  exists,
  importLeftovers,
  withDatabase,
  type ImageView as Image,
} from '../support/imports.js';
import { freePort } from '../support/server-process.js';
import { RouteServer } from '../support/web-server.js';

type Headers = Record<string, string>;

/** A row of GET /v2/images/{id}/tasks. */
interface ImageTask {
  id: string;
  type: string;
  status: string;
  owner: string | null;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
  deleted_at: string | null;
  deleted: boolean;
  image_id: string | null;
  request_id: string | null;
  user_id: string | null;
  input: Record<string, unknown>;
  result: Record<string, unknown> | null;
  message: string;
}

/** An element of GET /v2/tasks, or the body of GET /v2/tasks/{id}. */
type TaskView = Record<string, unknown> & { id: string; status: string; type: string };

interface TaskList {
  tasks: TaskView[];
  first: string;
  schema: string;
  next?: string;
}

const ALICE = asProject('alice');
const ALICE_READER = asProject('alice', 'reader');
const BOB = asProject('bob');
const ADMIN = asProject('admin-project', 'admin');
const RAW_BARE = { disk_format: 'raw', container_format: 'bare' };
/** How long an import of a few hundred KiB from loopback may take, with a wide margin. */
const TASK_TIMEOUT_MS = 20_000;
/** Upstream's task rows: microseconds and no zone. */
const ROW_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/;

// ---------------------------------------------------------------------------------------------
// The web-download source

/** A source that sends half its body, then waits until the test releases it. */
interface Stall {
  /** Settles once the first half has been handed to the connection. */
  readonly started: Promise<void>;
  release(): void;
}

/** A web-download source serving test bodies by path, counting the requests. */
class Source extends RouteServer {
  readonly #stalls: Array<() => void> = [];

  /** The body with its Content-Length. */
  withLength(path: string, data: Buffer): string {
    return this.route(path, (_request, response) => {
      response.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(data.length),
      });
      response.end(data);
    });
  }

  /** The body in chunked transfer encoding, in pieces of 64 KiB. */
  chunked(path: string, data: Buffer): string {
    return this.route(path, (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let at = 0; at < data.length; at += 64 * 1024) {
        response.write(data.subarray(at, at + 64 * 1024));
      }
      response.end();
    });
  }

  /** Announces `declared` bytes, sends `data` (fewer) and closes the connection. */
  short(path: string, data: Buffer, declared: number): string {
    return this.route(path, (_request, response) => {
      response.writeHead(200, { 'content-length': String(declared) });
      response.write(data, () => response.destroy());
    });
  }

  /** Announces `declared` bytes and sends all of `data` (more), as one write. */
  long(path: string, data: Buffer, declared: number): string {
    return this.route(path, (_request, response) => {
      response.writeHead(200, { 'content-length': String(declared) });
      response.end(data);
    });
  }

  redirect(path: string, location: string): string {
    return this.route(path, (_request, response) => {
      response.writeHead(302, { location }).end();
    });
  }

  status(path: string, code: number): string {
    return this.route(path, (_request, response) => {
      response.writeHead(code, { 'content-type': 'text/plain' }).end(`answered ${code}`);
    });
  }

  /** The body with its Content-Length, of which the second half waits for release(). */
  stall(path: string, data: Buffer): Stall & { uri: string } {
    let started: () => void = () => undefined;
    let release: () => void = () => undefined;
    const startedPromise = new Promise<void>((resolve) => (started = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.#stalls.push(release);
    const half = Math.floor(data.length / 2);
    const uri = this.route(path, (_request, response) => {
      response.writeHead(200, { 'content-length': String(data.length) });
      response.write(data.subarray(0, half), () => started());
      void released.then(() => response.end(data.subarray(half)));
    });
    return { uri, started: startedPromise, release };
  }

  override async close(): Promise<void> {
    for (const release of this.#stalls) release();
    await super.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The API

/** A fresh app whose web-download filter lets it fetch from the source (and from `closed`). */
async function startImportApp(
  database: TestDatabase,
  source: Source,
  closedPort: number,
  options: Partial<Record<OptionName, unknown>> = {},
): Promise<TestApp> {
  return startTestApp(database, {
    allowed_hosts: ['127.0.0.1'],
    allowed_ports: ['80', '443', String(source.port), String(closedPort)],
    ...options,
  });
}

function send(
  t: TestApp,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  headers: Headers,
  payload?: unknown,
): Promise<LightMyRequestResponse> {
  const all: Headers = { accept: 'application/json', ...headers };
  if (payload !== undefined && !Buffer.isBuffer(payload)) all['content-type'] = 'application/json';
  if (Buffer.isBuffer(payload)) all['content-type'] = 'application/octet-stream';
  const body =
    payload === undefined
      ? undefined
      : Buffer.isBuffer(payload)
        ? payload
        : JSON.stringify(payload);
  return t.request({ method, url, headers: all, payload: body });
}

/** The explanation of a JSON error body. */
function errorText(response: LightMyRequestResponse): string {
  return json<{ message: string }>(response).message;
}

function expectError(response: LightMyRequestResponse, status: number, text?: string): void {
  assert.equal(response.statusCode, status, response.body);
  if (text !== undefined) assert.ok(errorText(response).includes(text), response.body);
}

async function createImage(
  t: TestApp,
  body: Record<string, unknown> = RAW_BARE,
  headers: Headers = ALICE,
): Promise<Image> {
  const response = await send(t, 'POST', '/v2/images', headers, { name: 'import', ...body });
  assert.equal(response.statusCode, 201, response.body);
  return json<Image>(response);
}

async function showImage(t: TestApp, id: string, headers: Headers = ALICE): Promise<Image> {
  const response = await send(t, 'GET', `/v2/images/${id}`, headers);
  assert.equal(response.statusCode, 200, response.body);
  return json<Image>(response);
}

async function stage(t: TestApp, id: string, data: Buffer, headers: Headers = ALICE) {
  const response = await send(t, 'PUT', `/v2/images/${id}/stage`, headers, data);
  assert.equal(response.statusCode, 204, response.body);
}

function startImport(
  t: TestApp,
  id: string,
  body: unknown,
  headers: Headers = ALICE,
): Promise<LightMyRequestResponse> {
  return send(t, 'POST', `/v2/images/${id}/import`, headers, body);
}

const webDownload = (uri: string) => ({ method: { name: 'web-download', uri } });
const glanceDirect = { method: { name: 'glance-direct' } };

async function accepted(t: TestApp, id: string, body: unknown, headers: Headers = ALICE) {
  const response = await startImport(t, id, body, headers);
  assert.equal(response.statusCode, 202, response.body);
  assert.equal(response.body, '');
  return response;
}

async function imageTasks(t: TestApp, id: string, headers: Headers = ADMIN) {
  const response = await send(t, 'GET', `/v2/images/${id}/tasks`, headers);
  assert.equal(response.statusCode, 200, response.body);
  return json<{ tasks: ImageTask[] }>(response).tasks;
}

const isFinished = (task: ImageTask) => task.status === 'success' || task.status === 'failure';

/** The image's newest task once it has finished; fails after TASK_TIMEOUT_MS. */
async function finishedTask(t: TestApp, id: string): Promise<ImageTask> {
  const deadline = Date.now() + TASK_TIMEOUT_MS;
  for (;;) {
    const tasks = await imageTasks(t, id);
    const newest = tasks[0];
    if (newest && isFinished(newest)) return newest;
    if (Date.now() > deadline) {
      assert.fail(`the import of ${id} did not finish: ${JSON.stringify(tasks)}`);
    }
    await sleep(25);
  }
}

/** GET /v2/tasks/{id} once the task has finished; fails after TASK_TIMEOUT_MS. */
async function finishedTaskById(t: TestApp, id: string): Promise<TaskView> {
  const deadline = Date.now() + TASK_TIMEOUT_MS;
  for (;;) {
    const response = await send(t, 'GET', `/v2/tasks/${id}`, ADMIN);
    assert.equal(response.statusCode, 200, response.body);
    const task = json<TaskView>(response);
    if (task.status === 'success' || task.status === 'failure') return task;
    if (Date.now() > deadline) assert.fail(`task ${id} did not finish: ${response.body}`);
    await sleep(25);
  }
}

/** Polls the image until check holds; fails after TASK_TIMEOUT_MS. */
async function imageWhen(t: TestApp, id: string, check: (image: Image) => boolean, what: string) {
  const deadline = Date.now() + TASK_TIMEOUT_MS;
  for (;;) {
    const image = await showImage(t, id, ADMIN);
    if (check(image)) return image;
    if (Date.now() > deadline) assert.fail(`${id} never got ${what}: ${JSON.stringify(image)}`);
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------------------------
// What a finished import leaves

function assertTaskRow(task: ImageTask, id: string, body: unknown, owner: string): void {
  assert.equal(task.type, 'api_image_import');
  assert.equal(task.image_id, id);
  assert.equal(task.owner, owner);
  assert.deepEqual(task.input, { image_id: id, import_req: body, backend: [null] });
  assert.equal(task.deleted, false);
  assert.equal(task.deleted_at, null);
  assert.match(task.created_at, ROW_TIME);
  assert.match(task.updated_at, ROW_TIME);
  assert.match(task.expires_at ?? '', ROW_TIME, 'a finished task expires');
}

async function assertImported(
  t: TestApp,
  id: string,
  data: Buffer,
  body: unknown,
  owner = 'alice',
): Promise<ImageTask> {
  const task = await finishedTask(t, id);
  assert.equal(task.status, 'success', `the import failed: ${task.message}`);
  assert.deepEqual(task.result, { image_id: id });
  assert.equal(task.message, '');
  assertTaskRow(task, id, body, owner);

  const image = await showImage(t, id, ADMIN);
  assertActiveWith(image, data);
  assertImportBookkeeping(image);
  assert.deepEqual(await importLeftovers(t, id), []);

  const download = await send(t, 'GET', `/v2/images/${id}/file`, ADMIN);
  assert.equal(download.statusCode, 200);
  assert.ok(download.rawPayload.equals(data), 'the stored data is the imported data');
  return task;
}

async function assertImportFailed(
  t: TestApp,
  id: string,
  body: unknown,
  message: RegExp,
  owner = 'alice',
): Promise<ImageTask> {
  const task = await finishedTask(t, id);
  assert.equal(task.status, 'failure', JSON.stringify(task));
  assert.equal(task.result, null);
  assertTaskRow(task, id, body, owner);

  await assertImportUndone(t, await showImage(t, id, ADMIN));
  // Last, so that a poor message does not hide a wrong state.
  assert.match(task.message, message);
  return task;
}

/** A refused import: nothing changed and no task was created. */
async function assertUntouched(t: TestApp, id: string, status = 'queued'): Promise<void> {
  const image = await showImage(t, id, ADMIN);
  assert.equal(image.status, status);
  assert.equal(image[LOCK], undefined);
  assert.deepEqual(await imageTasks(t, id), []);
}

// ---------------------------------------------------------------------------------------------
// The suites

for (const database of await testDatabases()) {
  describe(`image import on ${database.name}`, { skip: database.skip ?? false }, () => {
    let source: Source;
    let closedPort = 0;
    let t: TestApp;

    before(async () => {
      source = await new Source().listen();
      closedPort = await freePort();
      t = await startImportApp(database, source, closedPort);
    });
    after(async () => {
      await t?.close();
      await source?.close();
    });

    describe('discovery', () => {
      it('lists the enabled methods in GET /v2/info/import', async () => {
        const response = await send(t, 'GET', '/v2/info/import', ALICE);
        assert.equal(response.statusCode, 200, response.body);
        assert.deepEqual(json(response), {
          'import-methods': {
            description: 'Import methods available.',
            type: 'array',
            value: ['glance-direct', 'web-download'],
          },
        });
      });

      it('names the enabled methods in the header of an image create', async () => {
        const response = await send(t, 'POST', '/v2/images', ALICE, RAW_BARE);
        assert.equal(response.statusCode, 201, response.body);
        assert.equal(
          response.headers['openstack-image-import-methods'],
          'glance-direct,web-download',
        );
      });

      it('offers only the configured methods', async () => {
        const only = await startImportApp(database, source, closedPort, {
          enabled_import_methods: ['glance-direct'],
        });
        try {
          const info = json<{ 'import-methods': { value: string[] } }>(
            await send(only, 'GET', '/v2/info/import', ALICE),
          );
          assert.deepEqual(info['import-methods'].value, ['glance-direct']);
          const created = await send(only, 'POST', '/v2/images', ALICE, RAW_BARE);
          assert.equal(created.headers['openstack-image-import-methods'], 'glance-direct');
          const id = json<Image>(created).id;
          const uri = source.withLength('/only-direct', randomBytes(100));
          const response = await startImport(only, id, webDownload(uri));
          expectError(response, 400, "Unknown import method name 'web-download'.");
          await assertUntouched(only, id);
          assert.equal(source.hits('/only-direct'), 0);
        } finally {
          await only.close();
        }
      });
    });

    describe('successful imports', () => {
      it('imports staged data with glance-direct and removes it from staging', async () => {
        const data = randomBytes(300 * 1024);
        const { id } = await createImage(t);
        await stage(t, id, data);
        const staged = await showImage(t, id);
        assert.equal(staged.status, 'uploading');
        assert.equal(staged.size, data.length);
        assert.ok(await exists(join(t.dataDir, 'staging', id)), 'the data is staged');

        const response = await accepted(t, id, glanceDirect);
        const task = await assertImported(t, id, data, glanceDirect);
        assert.equal(task.request_id, response.headers['x-openstack-request-id']);
        assert.equal(task.user_id, 'alice-user');
        assert.ok(await exists(join(t.dataDir, 'images', id)), 'the data is in the store');
      });

      it('downloads a body with a Content-Length with web-download', async () => {
        const data = randomBytes(256 * 1024 + 17);
        const body = webDownload(source.withLength('/sized', data));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImported(t, id, data, body);
        assert.equal(source.hits('/sized'), 1);
      });

      it('downloads a chunked body with web-download', async () => {
        const data = randomBytes(200 * 1024 + 3);
        const body = webDownload(source.chunked('/chunked', data));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImported(t, id, data, body);
        assert.equal(source.hits('/chunked'), 1);
      });

      it('follows a redirect to an allowed source', async () => {
        const data = randomBytes(5000);
        source.withLength('/redirect-target', data);
        const body = webDownload(source.redirect('/redirect', '/redirect-target'));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImported(t, id, data, body);
        assert.equal(source.hits('/redirect-target'), 1);
      });

      it('imports an empty body', async () => {
        const body = webDownload(source.withLength('/empty', Buffer.alloc(0)));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImported(t, id, Buffer.alloc(0), body);
      });

      it('lets an admin import an image of another project', async () => {
        const data = randomBytes(1000);
        const body = webDownload(source.withLength('/by-admin', data));
        const { id } = await createImage(t);
        await accepted(t, id, body, ADMIN);
        await assertImported(t, id, data, body, 'admin-project');
      });
    });

    describe('requests refused before a task is created', () => {
      let queued: Image;

      before(async () => {
        queued = await createImage(t);
      });

      it('answers 400 to a request without a body', async () => {
        const response = await t.request({
          method: 'POST',
          url: `/v2/images/${queued.id}/import`,
          headers: { ...ALICE, accept: 'application/json' },
        });
        expectError(response, 400);
        await assertUntouched(t, queued.id);
      });

      it('answers 400 to a body without a method or without its name', async () => {
        for (const body of [{}, { method: 'glance-direct' }, { method: null }]) {
          const response = await startImport(t, queued.id, body);
          expectError(response, 400, "Import request requires a 'method' field.");
        }
        const response = await startImport(t, queued.id, { method: { uri: 'http://x/' } });
        expectError(response, 400, "Import request requires a 'name' field.");
        await assertUntouched(t, queued.id);
      });

      it('answers 400 to a body that is not a JSON object', async () => {
        for (const body of [[], 'glance-direct', 42]) {
          expectError(await startImport(t, queued.id, body), 400);
        }
        await assertUntouched(t, queued.id);
      });

      it('answers 400 to an unknown or disabled method', async () => {
        for (const name of ['copy-image', 'glance-download', 'bogus', 7]) {
          const response = await startImport(t, queued.id, { method: { name } });
          expectError(response, 400, `Unknown import method name '${name}'.`);
        }
        await assertUntouched(t, queued.id);
      });

      it('answers 400 to all_stores or all_stores_must_succeed not being booleans', async () => {
        for (const flag of ['all_stores', 'all_stores_must_succeed']) {
          for (const value of ['true', 1, null]) {
            const response = await startImport(t, queued.id, { ...glanceDirect, [flag]: value });
            expectError(response, 400, `'${flag}' must be boolean value only`);
          }
        }
        await assertUntouched(t, queued.id);
      });

      it('answers 400 to all_stores_must_succeed false without multiple stores', async () => {
        const uri = source.withLength('/never-fetched', randomBytes(10));
        const body = { ...webDownload(uri), all_stores_must_succeed: false };
        const response = await startImport(t, queued.id, body);
        expectError(
          response,
          400,
          'All_stores_must_succeed can only be set with enabled_backends',
        );
        await assertUntouched(t, queued.id);
        assert.equal(source.hits('/never-fetched'), 0);
      });

      it('answers 409 to an import into an active image', async () => {
        const { id } = await createImage(t);
        const upload = await send(t, 'PUT', `/v2/images/${id}/file`, ALICE, randomBytes(64));
        assert.equal(upload.statusCode, 204, upload.body);
        for (const body of [glanceDirect, webDownload(source.url('/never-fetched'))]) {
          const response = await startImport(t, id, body);
          expectError(response, 409, 'Image with status active cannot be target for import');
        }
        await assertUntouched(t, id, 'active');
      });

      it('answers 409 to web-download into a staged image', async () => {
        const { id } = await createImage(t);
        await stage(t, id, randomBytes(64));
        const response = await startImport(t, id, webDownload(source.url('/never-fetched')));
        expectError(response, 409, "Image needs to be in 'queued' state to use 'web-download'");
        await assertUntouched(t, id, 'uploading');
        assert.ok(await exists(join(t.dataDir, 'staging', id)), 'the staged data is kept');
      });

      it('answers 409 to glance-direct without staged data', async () => {
        const response = await startImport(t, queued.id, glanceDirect);
        expectError(
          response,
          409,
          "Image needs to be staged before 'glance-direct' method can be used",
        );
        await assertUntouched(t, queued.id);
      });

      it('answers 409 when disk_format or container_format is missing', async () => {
        const uri = source.url('/never-fetched');
        const cases = [
          { body: { container_format: 'bare' }, missing: 'disk_format' },
          { body: { disk_format: 'raw' }, missing: 'container_format' },
        ];
        for (const { body, missing } of cases) {
          const { id } = await createImage(t, body);
          const response = await startImport(t, id, webDownload(uri));
          expectError(response, 409, `'${missing}' needs to be set before import`);
          await assertUntouched(t, id);

          const staged = await createImage(t, body);
          await stage(t, staged.id, randomBytes(64));
          expectError(await startImport(t, staged.id, glanceDirect), 409, 'needs to be set');
          await assertUntouched(t, staged.id, 'uploading');
        }
        assert.equal(source.hits('/never-fetched'), 0);
      });

      it('answers 403 to a reader of the project and 404 to another project', async () => {
        const uri = source.url('/never-fetched');
        expectError(await startImport(t, queued.id, webDownload(uri), ALICE_READER), 403);
        expectError(await startImport(t, queued.id, webDownload(uri), BOB), 404);
        const missing = await startImport(t, randomUUID(), webDownload(uri));
        expectError(missing, 404);
        await assertUntouched(t, queued.id);
        assert.equal(source.hits('/never-fetched'), 0);
      });
    });

    describe('the web-download URI filter', () => {
      const refused = [
        ['a link-local metadata address', 'http://169.254.169.254/latest/meta-data/'],
        ['a host that is not allowed', 'http://192.0.2.1/image'],
        ['an ftp URI', 'ftp://127.0.0.1/image'],
        ['a file URI', 'file:///etc/passwd'],
        ['a port that is not allowed', 'http://127.0.0.1:1/image'],
        ['a hexadecimal shorthand address', 'http://0x7f.1/image'],
        ['an integer address', 'http://2130706433/image'],
        ['a URI without a host', 'http:///image'],
        ['something that is not a URI', 'not a uri'],
      ] as const;

      for (const [what, uri] of refused) {
        it(`refuses ${what} with 400 and leaves the image queued without a task`, async () => {
          const { id } = await createImage(t);
          const response = await startImport(t, id, webDownload(uri));
          expectError(response, 400, 'URI for web-download does not pass filtering');
          await assertUntouched(t, id);
        });
      }

      it('refuses a web-download without a uri', async () => {
        const { id } = await createImage(t);
        const response = await startImport(t, id, { method: { name: 'web-download' } });
        expectError(response, 400, 'URI for web-download does not pass filtering');
        await assertUntouched(t, id);
      });

      it('refuses loopback sources when the host is not explicitly allowed', async () => {
        const strict = await startTestApp(database);
        try {
          const uris = [
            'http://127.0.0.1/image',
            'http://localhost/image',
            'http://[::1]/image',
            `http://127.0.0.1:${source.port}/loopback`,
          ];
          for (const uri of uris) {
            const { id } = await createImage(strict);
            const response = await startImport(strict, id, webDownload(uri));
            expectError(response, 400, 'URI for web-download does not pass filtering');
            await assertUntouched(strict, id);
          }
          assert.equal(source.hits('/loopback'), 0);
        } finally {
          await strict.close();
        }
      });
    });

    describe('imports that fail after the 202', () => {
      it('fails when nothing listens on the source port', async () => {
        const body = webDownload(`http://127.0.0.1:${closedPort}/image`);
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImportFailed(t, id, body, /ECONNREFUSED/);
      });

      it('fails when the source answers 404', async () => {
        const body = webDownload(source.status('/gone', 404));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImportFailed(t, id, body, /answered HTTP 404/);
        assert.equal(source.hits('/gone'), 1);
      });

      it('fails when the source answers 500', async () => {
        const body = webDownload(source.status('/broken', 500));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImportFailed(t, id, body, /answered HTTP 500/);
      });

      it('fails when the source sends fewer bytes than its Content-Length', async () => {
        const body = webDownload(source.short('/short', randomBytes(40_000), 100_000));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImportFailed(t, id, body, /of 100000 bytes/);
      });

      it('fails when the source sends more bytes than its Content-Length', async () => {
        const body = webDownload(source.long('/long', randomBytes(120_000), 100_000));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImportFailed(t, id, body, /more than its Content-Length of 100000 bytes/);
      });

      it('hides the credentials of the URI in the task message', async () => {
        source.status('/private', 404);
        const body = webDownload(`http://user:secret@127.0.0.1:${source.port}/private`);
        const { id } = await createImage(t);
        await accepted(t, id, body);
        const task = await assertImportFailed(t, id, body, /404/);
        assert.equal(task.message.includes('secret'), false, task.message);
        assert.equal(source.hits('/private'), 1);
      });

      it('fails when the source redirects to an address the filter refuses', async () => {
        const body = webDownload(source.redirect('/to-metadata', 'http://169.254.169.254/'));
        const { id } = await createImage(t);
        await accepted(t, id, body);
        await assertImportFailed(t, id, body, /does not pass filtering/);
        assert.equal(source.hits('/to-metadata'), 1);
      });

      it('fails glance-direct of data that is not its disk_format and drops it', async () => {
        const { id } = await createImage(t, { disk_format: 'qcow2', container_format: 'bare' });
        await stage(t, id, randomBytes(64 * 1024));
        await accepted(t, id, glanceDirect);
        await assertImportFailed(t, id, glanceDirect, /qcow2/);
        // Queued again with nothing staged, so it can be staged anew.
        await stage(t, id, randomBytes(1024));
      });

      it('fails when the image was deleted before the task ran', async () => {
        const stall = source.stall('/blocker-for-deleted', randomBytes(10_000));
        const deleted = webDownload(source.withLength('/deleted', randomBytes(100)));
        // task_workers 1: the blocker keeps the only worker busy, so the next task waits.
        const one = await startImportApp(database, source, closedPort, { task_workers: 1 });
        try {
          const blocker = await createImage(one);
          await accepted(one, blocker.id, webDownload(stall.uri));
          await stall.started;
          const { id } = await createImage(one);
          await accepted(one, id, deleted);
          const [queued] = await imageTasks(one, id);
          assert.equal(queued?.status, 'pending');
          const removed = await send(one, 'DELETE', `/v2/images/${id}`, ALICE);
          assert.equal(removed.statusCode, 204, removed.body);
          stall.release();
          await finishedTask(one, blocker.id);
          const task = await finishedTaskById(one, queued.id);
          assert.equal(task.status, 'failure', JSON.stringify(task));
          assert.equal(task.result, null);
          assert.match(String(task.message), /no longer exists/);
          assert.equal(source.hits('/deleted'), 0, 'nothing is fetched for a deleted image');
          assert.deepEqual(await importLeftovers(one, id), []);
        } finally {
          stall.release();
          await one.close();
        }
      });

      describe('unsafe disk images', { skip: qemuSkip() }, () => {
        let dir = '';
        let backed: Buffer = Buffer.alloc(0);

        before(() => {
          dir = mkdtempSync(join(tmpdir(), 'glimpse-import-qemu-'));
          const backing = join(dir, 'backing.raw');
          writeFileSync(backing, Buffer.alloc(1024 * 1024));
          backed = buildBackedQcow2(join(dir, 'child.qcow2'), backing);
        });
        after(() => rmSync(dir, { recursive: true, force: true }));

        for (const diskFormat of ['qcow2', 'raw']) {
          it(`fails a qcow2 with a backing file imported as ${diskFormat}`, async () => {
            const body = webDownload(source.withLength(`/backed-${diskFormat}`, backed));
            const { id } = await createImage(t, {
              disk_format: diskFormat,
              container_format: 'bare',
            });
            await accepted(t, id, body);
            await assertImportFailed(t, id, body, /backing_file|safety/i);
          });
        }
      });

      describe('with a small image_size_cap', () => {
        let capped: TestApp;

        before(async () => {
          capped = await startImportApp(database, source, closedPort, { image_size_cap: 4096 });
        });
        after(() => capped?.close());

        it('fails a download larger than the cap', async () => {
          for (const [path, uri] of [
            ['/too-big-sized', source.withLength('/too-big-sized', randomBytes(10_000))],
            ['/too-big-chunked', source.chunked('/too-big-chunked', randomBytes(10_000))],
          ] as const) {
            const body = webDownload(uri);
            const { id } = await createImage(capped);
            await accepted(capped, id, body);
            await assertImportFailed(capped, id, body, /too large/);
            assert.equal(source.hits(path), 1);
          }
        });

        it('imports a download of exactly the cap', async () => {
          const data = randomBytes(4096);
          const body = webDownload(source.withLength('/at-cap', data));
          const { id } = await createImage(capped);
          await accepted(capped, id, body);
          await assertImported(capped, id, data, body);
        });
      });
    });

    describe('the import lock', () => {
      let one: TestApp;

      before(async () => {
        // One worker: while it is busy, further tasks stay pending with their lock held.
        one = await startImportApp(database, source, closedPort, { task_workers: 1 });
      });
      after(() => one?.close());

      it('refuses a second import while the first is pending or processing', async () => {
        const slowData = randomBytes(64 * 1024);
        const stall = source.stall('/slow', slowData);
        const slowBody = webDownload(stall.uri);
        const slow = await createImage(one);
        try {
          await accepted(one, slow.id, slowBody);
          await stall.started;

          const importing = await imageWhen(
            one,
            slow.id,
            (image) => image.status === 'importing',
            'importing',
          );
          const [processing] = await imageTasks(one, slow.id);
          assert.equal(processing?.status, 'processing');
          assert.equal(importing[LOCK], processing?.id);
          assert.equal(importing[IMPORTING_TO], '');
          expectError(
            await startImport(one, slow.id, webDownload(source.url('/never-fetched'))),
            409,
            "Image needs to be in 'queued' state to use 'web-download' method",
          );

          // The worker is busy: this import stays pending, its image queued and locked.
          const waitingData = randomBytes(5000);
          const waitingBody = webDownload(source.withLength('/waiting', waitingData));
          const waiting = await createImage(one);
          await accepted(one, waiting.id, waitingBody);
          const [pending] = await imageTasks(one, waiting.id);
          assert.equal(pending?.status, 'pending');
          const locked = await showImage(one, waiting.id);
          assert.equal(locked.status, 'queued');
          assert.equal(locked[LOCK], pending?.id);

          const second = await startImport(one, waiting.id, webDownload(source.url('/second')));
          expectError(second, 409, 'Image has active task');
          assert.equal((await imageTasks(one, waiting.id)).length, 1, 'no second task');
          assert.equal(source.hits('/second'), 0);

          stall.release();
          await assertImported(one, slow.id, slowData, slowBody);
          await assertImported(one, waiting.id, waitingData, waitingBody);
          assert.equal(source.hits('/waiting'), 1);
        } finally {
          stall.release();
        }
      });

      /**
       * A new image whose web-download of path waits, pending, behind the download of another
       * image (the blocker) that stalls until released: the one worker is busy with it.
       */
      async function importBehindStall(blockerPath: string, path: string) {
        const stall = source.stall(blockerPath, randomBytes(10_000));
        const blocker = await createImage(one);
        await accepted(one, blocker.id, webDownload(stall.uri));
        await stall.started;
        const { id } = await createImage(one);
        await accepted(one, id, webDownload(source.withLength(path, randomBytes(100))));
        return { stall, blocker, id };
      }

      it('answers 409 for a held lock before it looks at the URI', async () => {
        const { stall, blocker, id } = await importBehindStall('/blocker-3', '/held');
        try {
          const [holder] = await imageTasks(one, id);
          assert.equal(holder?.status, 'pending');

          // As upstream, the lock is checked before the stores and the URI filter.
          const refusedUri = webDownload('http://169.254.169.254/latest/meta-data/');
          const response = await startImport(one, id, refusedUri);
          expectError(response, 409, 'Image has active task');
          assert.equal((await showImage(one, id))[LOCK], holder?.id);
          assert.equal((await imageTasks(one, id)).length, 1, 'no second task');

          stall.release();
          await finishedTask(one, blocker.id);
          assert.equal((await finishedTask(one, id)).status, 'success');
        } finally {
          stall.release();
        }
      });

      it('breaks a lock whose task does not exist and imports', async () => {
        const { id } = await createImage(one);
        const ghost = randomUUID();
        await withDatabase(one, (db) =>
          db
            .insertInto('image_properties')
            .values({ image_id: id, name: LOCK, value: ghost })
            .execute(),
        );
        assert.equal((await showImage(one, id))[LOCK], ghost);

        const data = randomBytes(3000);
        const body = webDownload(source.withLength('/after-stale', data));
        await accepted(one, id, body);
        await assertImported(one, id, data, body);
        assert.equal((await imageTasks(one, id)).length, 1);
      });

      it('keeps the lock of a pending task that is recent', async () => {
        const { stall, blocker, id } = await importBehindStall('/blocker', '/queued-behind');
        try {
          const [task] = await imageTasks(one, id);
          // Only a task that no longer exists, or that has not moved for an hour, is stale.
          const response = await startImport(one, id, webDownload(source.url('/second')));
          expectError(response, 409, 'Image has active task');
          assert.equal((await showImage(one, id))[LOCK], task?.id);
          stall.release();
          await finishedTask(one, blocker.id);
          assert.equal((await finishedTask(one, id)).status, 'success');
        } finally {
          stall.release();
        }
      });

      it('breaks a lock whose task has not moved for over two hours', async () => {
        const { stall, blocker, id } = await importBehindStall('/blocker-2', '/abandoned');
        try {
          const [old] = await imageTasks(one, id);
          assert.ok(old);
          const longAgo = new Date(Date.now() - 3 * 3_600_000).toISOString();
          await withDatabase(one, (db) =>
            db
              .updateTable('tasks')
              .set({ updated_at: longAgo })
              .where('id', '=', old.id)
              .execute(),
          );

          const data = randomBytes(2000);
          const body = webDownload(source.withLength('/replacement', data));
          await accepted(one, id, body);
          const tasks = await imageTasks(one, id);
          assert.equal(tasks.length, 2);
          const expired = tasks.find((task) => task.id === old.id);
          assert.equal(expired?.status, 'failure');
          assert.equal(expired?.message, 'Expired lock preempted');

          stall.release();
          await finishedTask(one, blocker.id);
          await assertImported(one, id, data, body);
          assert.equal(source.hits('/abandoned'), 0, 'the preempted task never ran');
        } finally {
          stall.release();
        }
      });
    });

    describe('image tasks', () => {
      it('shows non-admins only the tasks of their own project', async () => {
        const { id } = await createImage(t);
        const failing = webDownload(source.status('/missing-for-alice', 404));
        await accepted(t, id, failing);
        const mine = await assertImportFailed(t, id, failing, /404/);

        const data = randomBytes(2048);
        const body = webDownload(source.withLength('/for-admin', data));
        await accepted(t, id, body, ADMIN);
        const theirs = await assertImported(t, id, data, body, 'admin-project');

        const seenByAlice = await imageTasks(t, id, ALICE);
        assert.deepEqual(
          seenByAlice.map((task) => task.id),
          [mine.id],
        );
        const seenByAdmin = await imageTasks(t, id, ADMIN);
        assert.deepEqual(seenByAdmin.map((task) => task.id).sort(), [mine.id, theirs.id].sort());
        assert.deepEqual(
          seenByAdmin.map((task) => task.id),
          [theirs.id, mine.id],
          'newest first',
        );

        const hidden = await send(t, 'GET', `/v2/images/${id}/tasks`, BOB);
        expectError(hidden, 404);
        const unknown = await send(t, 'GET', `/v2/images/${randomUUID()}/tasks`, ALICE);
        expectError(unknown, 404);
      });
    });
  });

  describe(`task expiry on ${database.name}`, { skip: database.skip ?? false }, () => {
    const HOURS_TO_LIVE = 3;
    let source: Source;
    let t: TestApp;

    before(async () => {
      source = await new Source().listen();
      t = await startImportApp(database, source, await freePort(), {
        task_time_to_live: HOURS_TO_LIVE,
      });
    });
    after(async () => {
      await t?.close();
      await source?.close();
    });

    /** A finished import task of a new image, successful unless `path` answers 404. */
    async function finishedImport(path: string, fails = false): Promise<ImageTask> {
      const uri = fails ? source.status(path, 404) : source.withLength(path, randomBytes(500));
      const { id } = await createImage(t);
      await accepted(t, id, webDownload(uri));
      return finishedTask(t, id);
    }

    async function taskIds(): Promise<string[]> {
      const response = await send(t, 'GET', '/v2/tasks', ADMIN);
      assert.equal(response.statusCode, 200, response.body);
      return json<TaskList>(response).tasks.map((task) => task.id);
    }

    it('expires a task task_time_to_live hours after it finished', async () => {
      const stall = source.stall('/slow-to-finish', randomBytes(10_000));
      const { id } = await createImage(t);
      try {
        await accepted(t, id, webDownload(stall.uri));
        await stall.started;
        // Long enough for the creation and the completion times to differ visibly.
        await sleep(300);
      } finally {
        stall.release();
      }
      const succeeded = await finishedTask(t, id);
      assert.equal(succeeded.status, 'success', succeeded.message);
      const ranFor =
        Date.parse(`${succeeded.updated_at}Z`) - Date.parse(`${succeeded.created_at}Z`);
      assert.ok(ranFor >= 300, `the import took only ${ranFor} ms`);
      const failed = await finishedImport('/expiring-failure', true);
      assert.equal(failed.status, 'failure');

      for (const task of [succeeded, failed]) {
        // As upstream: counted from the completion (the last update), not from the creation.
        const finishedAt = Date.parse(`${task.updated_at}Z`);
        const expected = new Date(finishedAt + HOURS_TO_LIVE * 3_600_000);
        assert.equal(task.expires_at, expected.toISOString().replace('Z', '000'));
        const shown = json<TaskView>(await send(t, 'GET', `/v2/tasks/${task.id}`, ADMIN));
        assert.equal(shown.expires_at, `${expected.toISOString().slice(0, 19)}Z`);
      }
    });

    it('purges an expired task from GET /v2/tasks and the image tasks', async () => {
      const expiring = await finishedImport('/soon-gone');
      const kept = await finishedImport('/kept');
      const imageId = String(expiring.image_id);
      assert.ok((await taskIds()).includes(expiring.id));
      const past = new Date(Date.now() - 60_000).toISOString();
      await withDatabase(t, (db) =>
        db.updateTable('tasks').set({ expires_at: past }).where('id', '=', expiring.id).execute(),
      );

      // Listings leave it out at once, as upstream's listings purge expired tasks first.
      assert.ok(!(await taskIds()).includes(expiring.id));
      assert.deepEqual(await imageTasks(t, imageId), []);
      assert.deepEqual(await imageTasks(t, imageId, ALICE), []);

      // The task runner purges on its own schedule, every few seconds.
      const deadline = Date.now() + TASK_TIMEOUT_MS;
      while ((await send(t, 'GET', `/v2/tasks/${expiring.id}`, ADMIN)).statusCode !== 404) {
        if (Date.now() > deadline) assert.fail(`task ${expiring.id} was never purged`);
        await sleep(100);
      }
      const row = await withDatabase(t, (db) =>
        db
          .selectFrom('tasks')
          .select(['deleted', 'deleted_at'])
          .where('id', '=', expiring.id)
          .executeTakeFirstOrThrow(),
      );
      assert.equal(row.deleted, 1);
      assert.ok(row.deleted_at !== null && Date.parse(row.deleted_at) > Date.parse(past));

      assert.ok((await taskIds()).includes(kept.id), 'a task not yet expired stays');
      assert.deepEqual(
        (await imageTasks(t, String(kept.image_id))).map((task) => task.id),
        [kept.id],
      );
    });
  });

  describe(`tasks API on ${database.name}`, { skip: database.skip ?? false }, () => {
    let source: Source;
    let t: TestApp;
    const ids: string[] = [];

    before(async () => {
      source = await new Source().listen();
      t = await startImportApp(database, source, await freePort());
      for (const n of [1, 2, 3]) {
        const { id } = await createImage(t);
        await accepted(t, id, webDownload(source.withLength(`/task-${n}`, randomBytes(n * 100))));
        await finishedTask(t, id);
        ids.push(id);
      }
      const { id } = await createImage(t);
      await accepted(t, id, webDownload(source.status('/task-missing', 404)));
      await finishedTask(t, id);
      ids.push(id);
    });
    after(async () => {
      await t?.close();
      await source?.close();
    });

    async function list(query = ''): Promise<TaskList> {
      const response = await send(t, 'GET', `/v2/tasks${query}`, ADMIN);
      assert.equal(response.statusCode, 200, response.body);
      return json<TaskList>(response);
    }

    it('lists every task to an admin, newest first, as stubs', async () => {
      const body = await list();
      assert.equal(body.first, '/v2/tasks');
      assert.equal(body.schema, '/v2/schemas/tasks');
      assert.equal(body.next, undefined);
      assert.deepEqual(
        body.tasks.map((task) => task.image_id),
        [...ids].reverse(),
      );
      for (const task of body.tasks) {
        assert.equal(task.type, 'api_image_import');
        assert.equal(task.owner, 'alice');
        assert.equal(task.self, `/v2/tasks/${task.id}`);
        assert.equal(task.schema, '/v2/schemas/task');
        assert.match(String(task.created_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
        assert.match(String(task.expires_at), /Z$/);
        for (const hidden of ['input', 'result', 'message']) {
          assert.equal(hidden in task, false, `a stub has no ${hidden}`);
        }
      }
    });

    it('filters by status and type', async () => {
      const succeeded = await list('?status=success');
      assert.deepEqual(
        succeeded.tasks.map((task) => task.image_id).sort(),
        ids.slice(0, 3).sort(),
      );
      const failed = await list('?status=failure');
      assert.deepEqual(
        failed.tasks.map((task) => task.image_id),
        [ids[3]],
      );
      assert.deepEqual((await list('?status=pending')).tasks, []);
      // Upstream's filter only knows the type of the old tasks API.
      assert.deepEqual((await list('?type=import')).tasks, []);
    });

    it('sorts by sort_key and sort_dir', async () => {
      const ascending = await list('?sort_key=id&sort_dir=asc');
      const taskIds = ascending.tasks.map((task) => task.id);
      assert.deepEqual(taskIds, [...taskIds].sort());
      const descending = await list('?sort_key=id&sort_dir=desc');
      assert.deepEqual(
        descending.tasks.map((task) => task.id),
        [...taskIds].reverse(),
      );
      const byCreation = await list('?sort_key=created_at&sort_dir=asc');
      assert.deepEqual(
        byCreation.tasks.map((task) => task.image_id),
        ids,
      );
    });

    it('pages with limit and marker, following the next links', async () => {
      const seen: string[] = [];
      let url: string | undefined = '/v2/tasks?limit=3&sort_dir=asc';
      let pages = 0;
      while (url !== undefined) {
        pages += 1;
        assert.ok(pages <= 5, 'the next links must end');
        const response = await send(t, 'GET', url, ADMIN);
        assert.equal(response.statusCode, 200, response.body);
        const page = json<TaskList>(response);
        assert.ok(page.tasks.length <= 3);
        seen.push(...page.tasks.map((task) => String(task.image_id)));
        if (page.next !== undefined) {
          assert.match(page.next, /^\/v2\/tasks\?/);
          assert.match(page.next, /limit=3/);
          assert.match(page.next, /sort_dir=asc/);
          assert.match(page.next, /marker=/);
        }
        url = page.next;
      }
      assert.deepEqual(seen, ids);

      const all = await list('?sort_dir=asc');
      const second = all.tasks[1];
      assert.ok(second);
      const after2 = await list(`?sort_dir=asc&marker=${second.id}`);
      assert.deepEqual(
        after2.tasks.map((task) => task.image_id),
        ids.slice(2),
      );
      const limited = await list('?limit=1');
      assert.equal(limited.tasks.length, 1);
      assert.ok(limited.next);
    });

    it('answers 400 to a bad marker, sort key or direction, status, type or limit', async () => {
      const cases: Array<[string, string]> = [
        ['?marker=not-a-uuid', 'Invalid marker format'],
        ['?sort_key=name', 'Invalid sort_key'],
        ['?sort_dir=sideways', 'Invalid sort direction'],
        ['?status=done', 'Invalid status value'],
        ['?type=api_image_import', 'Invalid type value'],
        ['?limit=-1', 'limit param must be an integer'],
        ['?limit=ten', 'limit param must be an integer'],
      ];
      for (const [query, text] of cases) {
        expectError(await send(t, 'GET', `/v2/tasks${query}`, ADMIN), 400, text);
      }
    });

    it('refuses the tasks API to non-admins with 403', async () => {
      const [id] = (await list()).tasks.map((task) => task.id);
      for (const headers of [ALICE, ALICE_READER, BOB]) {
        expectError(await send(t, 'GET', '/v2/tasks', headers), 403, 'tasks_api_access');
        expectError(await send(t, 'GET', `/v2/tasks/${id}`, headers), 403);
      }
    });

    it('shows one task in full', async () => {
      const [stub] = (await list('?status=success&limit=1')).tasks;
      assert.ok(stub);
      const response = await send(t, 'GET', `/v2/tasks/${stub.id}`, ADMIN);
      assert.equal(response.statusCode, 200, response.body);
      const task = json<TaskView>(response);
      const imageId = String(stub.image_id);
      assert.equal(task.id, stub.id);
      assert.equal(task.status, 'success');
      assert.equal(task.type, 'api_image_import');
      assert.equal(task.owner, 'alice');
      assert.equal(task.image_id, imageId);
      assert.equal(task.user_id, 'alice-user');
      assert.equal(typeof task.request_id, 'string');
      assert.deepEqual(task.result, { image_id: imageId });
      assert.equal(task.message, '');
      assert.deepEqual(task.input, {
        image_id: imageId,
        import_req: webDownload(source.url(`/task-${ids.indexOf(imageId) + 1}`)),
        backend: [null],
      });
      assert.equal(task.self, `/v2/tasks/${stub.id}`);
      assert.equal(task.schema, '/v2/schemas/task');
      assert.match(String(task.expires_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

      const [failed] = (await list('?status=failure')).tasks;
      const failure = json<TaskView>(await send(t, 'GET', `/v2/tasks/${failed?.id}`, ADMIN));
      assert.equal(failure.result, null);
      assert.match(String(failure.message), /404/);
    });

    it('answers 404 to an unknown task', async () => {
      for (const id of [randomUUID(), 'not-a-uuid']) {
        expectError(await send(t, 'GET', `/v2/tasks/${id}`, ADMIN), 404);
      }
    });

    it('answers 405 with Allow: GET to DELETE of a task', async () => {
      const [task] = (await list()).tasks;
      const response = await send(t, 'DELETE', `/v2/tasks/${task?.id}`, ADMIN);
      assert.equal(response.statusCode, 405, response.body);
      assert.equal(response.headers.allow, 'GET');
      assert.equal((await list()).tasks.length, ids.length, 'nothing was deleted');
    });
  });
}
