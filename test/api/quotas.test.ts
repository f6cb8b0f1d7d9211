/**
 * Project quotas through the API, on both databases: the units of user_storage_quota, its
 * refusals before a transfer (declared size), during one (a chunked body of unknown size is
 * cut off at the quota) and after one (imports), uploads racing for the last bytes of a quota,
 * and GET /v2/info/usage while Keystone unified limits are off. Unified limits themselves are
 * tested against a real Keystone in test/e2e/quota-keystone.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LightMyRequestResponse } from 'fastify';

import { ConfigError, loadConfig } from '../../src/config/load.js';
import { parseStorageQuota } from '../../src/quota/storage.js';
import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

type Image = Record<string, unknown> & { id: string; status: string };
type Headers = Record<string, string>;

const KiB = 1024;
const MiB = 1024 * KiB;
const OCTETS: Headers = { 'content-type': 'application/octet-stream' };
const RAW_BARE = { disk_format: 'raw', container_format: 'bare' };
const TASK_TIMEOUT_MS = 15_000;

let projects = 0;
/** Headers of a member of a project no other test uses, so every test starts at no usage. */
const freshProject = (): Headers => ({
  ...asProject(`quota-project-${++projects}`),
  accept: 'application/json',
});

function errorText(response: LightMyRequestResponse): string {
  return json<{ message: string }>(response).message;
}

function expectStatus(response: LightMyRequestResponse, status: number): void {
  assert.equal(response.statusCode, status, response.body);
}

async function createImage(t: TestApp, who: Headers, body: object = RAW_BARE): Promise<Image> {
  const response = await t.request({
    method: 'POST',
    url: '/v2/images',
    headers: who,
    payload: JSON.stringify({ name: 'quota', ...body }),
  });
  expectStatus(response, 201);
  return json<Image>(response);
}

async function showImage(t: TestApp, id: string, who: Headers): Promise<Image> {
  const response = await t.request({ method: 'GET', url: `/v2/images/${id}`, headers: who });
  expectStatus(response, 200);
  return json<Image>(response);
}

/** PUT of image data; a Buffer goes with Content-Length, a Readable chunked. */
function putData(
  t: TestApp,
  id: string,
  who: Headers,
  body: Buffer | Readable,
  target: 'file' | 'stage' = 'file',
): Promise<LightMyRequestResponse> {
  return t.request({
    method: 'PUT',
    url: `/v2/images/${id}/${target}`,
    headers: { ...who, ...OCTETS },
    payload: body,
  });
}

/** A new raw image holding `size` random bytes. */
async function activeImage(t: TestApp, who: Headers, size: number): Promise<Image> {
  const image = await createImage(t, who);
  expectStatus(await putData(t, image.id, who, randomBytes(size)), 204);
  return image;
}

/** Every file under `dir` (partial writes included) and its size. */
async function filesUnder(dir: string): Promise<Array<{ path: string; size: number }>> {
  const found: Array<{ path: string; size: number }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await filesUnder(path)));
    else found.push({ path, size: (await stat(path)).size });
  }
  return found;
}

/** The image is queued without data, and neither the store nor staging holds any of it. */
async function assertQueuedWithoutData(t: TestApp, id: string, who: Headers): Promise<void> {
  const image = await showImage(t, id, who);
  assert.equal(image.status, 'queued');
  assert.equal(image.size, null);
  assert.equal(image.checksum, null);
  for (const area of ['images', 'staging']) {
    const left = (await filesUnder(join(t.dataDir, area))).filter((f) => f.path.includes(id));
    assert.deepEqual(left, [], `${id} left data in ${area}`);
  }
}

function assertOverStorageQuota(response: LightMyRequestResponse, remaining?: number): void {
  expectStatus(response, 413);
  assert.match(errorText(response), /^Image exceeds the storage quota: /);
  if (remaining !== undefined) {
    assert.ok(errorText(response).includes(` ${remaining} bytes remaining.`), response.body);
  }
}

/**
 * A chunked PUT whose body is written piece by piece on request, so a test can tell whether
 * the server answered before the body ended.
 */
class ChunkedUpload {
  readonly answer: Promise<{ status: number; body: string }>;
  readonly #request: http.ClientRequest;
  #answered = false;

  constructor(port: number, id: string, who: Headers) {
    this.#request = http.request({
      host: '127.0.0.1',
      port,
      method: 'PUT',
      path: `/v2/images/${id}/file`,
      headers: { ...who, ...OCTETS, accept: 'application/json' },
    });
    this.answer = new Promise((resolve, reject) => {
      this.#request.on('response', (response) => {
        this.#answered = true;
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() });
        });
      });
      this.#request.on('error', reject);
    });
    // A write after the server closed the connection may fail; the answer tells what happened.
    this.answer.catch(() => undefined);
  }

  get answered(): boolean {
    return this.#answered;
  }

  send(data: Buffer): Promise<void> {
    return new Promise((resolve) => this.#request.write(data, () => resolve()));
  }

  destroy(): void {
    this.#request.destroy();
  }
}

/** The newest task of an image once it has finished. */
async function finishedTask(t: TestApp, id: string, who: Headers) {
  const deadline = Date.now() + TASK_TIMEOUT_MS;
  for (;;) {
    const response = await t.request({
      method: 'GET',
      url: `/v2/images/${id}/tasks`,
      headers: who,
    });
    expectStatus(response, 200);
    const [task] = json<{ tasks: Array<{ status: string; message: string }> }>(response).tasks;
    if (task && (task.status === 'success' || task.status === 'failure')) return task;
    if (Date.now() > deadline) assert.fail(`the import of ${id} did not finish`);
    await sleep(25);
  }
}

describe('user_storage_quota values', () => {
  it('reads bytes and B, KB, MB, GB and TB as powers of 1024', () => {
    assert.equal(parseStorageQuota('0'), 0);
    assert.equal(parseStorageQuota('100'), 100);
    assert.equal(parseStorageQuota('100B'), 100);
    assert.equal(parseStorageQuota('2KB'), 2 * KiB);
    assert.equal(parseStorageQuota('3MB'), 3 * MiB);
    assert.equal(parseStorageQuota('4GB'), 4 * 1024 ** 3);
    assert.equal(parseStorageQuota('5TB'), 5 * 1024 ** 4);
    assert.equal(loadConfig({ GLIMPSE_USER_STORAGE_QUOTA: '10GB' }).user_storage_quota, '10GB');
    assert.equal(loadConfig({}).user_storage_quota, '0');
  });

  it('refuses any other value at start, naming the option', () => {
    for (const value of ['10 GB', '10gb', '1.5MB', '-1', 'MB', '10KiB', '10PB', ' 10', '']) {
      assert.throws(
        () => loadConfig({}, { user_storage_quota: value }),
        (error: unknown) =>
          error instanceof ConfigError && /user_storage_quota/.test(error.message),
        `'${value}' was accepted`,
      );
    }
  });
});

for (const database of await testDatabases()) {
  describe(`project quotas on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    let port = 0;
    before(async () => {
      t = await startTestApp(database, { user_storage_quota: '1MB' });
      await t.app.http.listen({ port: 0, host: '127.0.0.1' });
      port = (t.app.http.server.address() as AddressInfo).port;
    });
    after(() => t?.close());

    it('answers GET /v2/info/usage with no usage while unified limits are off', async () => {
      const response = await t.request({
        method: 'GET',
        url: '/v2/info/usage',
        headers: freshProject(),
      });
      expectStatus(response, 200);
      assert.deepEqual(json(response), { usage: {} });

      const posted = await t.request({ method: 'POST', url: '/v2/info/usage', headers: {} });
      expectStatus(posted, 405);
      assert.equal(posted.headers.allow, 'GET');
    });

    it('accepts data up to the quota and refuses a declared size past what is left', async () => {
      const who = freshProject();
      await activeImage(t, who, 600 * KiB);

      const image = await createImage(t, who);
      const left = MiB - 600 * KiB;
      assertOverStorageQuota(await putData(t, image.id, who, randomBytes(left + 1)), left);
      await assertQueuedWithoutData(t, image.id, who);

      const declared = await t.request({
        method: 'PUT',
        url: `/v2/images/${image.id}/file`,
        headers: { ...who, ...OCTETS, 'x-openstack-image-size': String(MiB) },
        payload: randomBytes(KiB),
      });
      assertOverStorageQuota(declared, left);
      await assertQueuedWithoutData(t, image.id, who);

      expectStatus(await putData(t, image.id, who, randomBytes(left)), 204);
      assert.equal((await showImage(t, image.id, who)).status, 'active');
    });

    it('refuses data of unknown size once nothing is left, before reading it', async () => {
      const who = freshProject();
      await activeImage(t, who, MiB);
      const image = await createImage(t, who);
      const response = await putData(t, image.id, who, Readable.from([randomBytes(KiB)]));
      assertOverStorageQuota(response, 0);
      await assertQueuedWithoutData(t, image.id, who);
    });

    it('stops a chunked upload of unknown size as soon as it passes the quota', async () => {
      const who = freshProject();
      await activeImage(t, who, 256 * KiB);
      const image = await createImage(t, who);

      const upload = new ChunkedUpload(port, image.id, who);
      try {
        for (let sent = 0; sent < 768 * KiB; sent += 64 * KiB) {
          await upload.send(randomBytes(64 * KiB));
        }
        await sleep(200);
        assert.equal(upload.answered, false, 'refused while still within the quota');

        // One byte over the quota ends it; the body is never finished.
        await upload.send(randomBytes(1));
        const answer = await Promise.race([
          upload.answer,
          sleep(10_000).then(() => assert.fail('no answer once past the quota')),
        ]);
        assert.equal(answer.status, 413, answer.body);
        assert.match(answer.body, /Image exceeds the storage quota: /);
      } finally {
        upload.destroy();
      }
      await assertQueuedWithoutData(t, image.id, who);
    });

    it('frees the quota when an image is deleted, and counts each project apart', async () => {
      const who = freshProject();
      const full = await activeImage(t, who, MiB);
      const next = await createImage(t, who);
      assertOverStorageQuota(await putData(t, next.id, who, randomBytes(1)), 0);

      await activeImage(t, freshProject(), MiB);

      const deleted = await t.request({
        method: 'DELETE',
        url: `/v2/images/${full.id}`,
        headers: who,
      });
      expectStatus(deleted, 204);
      expectStatus(await putData(t, next.id, who, randomBytes(MiB)), 204);
    });

    it('refuses to import data past the quota and leaves the image queued', async () => {
      const who = freshProject();
      await activeImage(t, who, 600 * KiB);
      const image = await createImage(t, who);
      // Staging is not stored data: it is not held to the storage quota.
      expectStatus(await putData(t, image.id, who, randomBytes(600 * KiB), 'stage'), 204);

      const started = await t.request({
        method: 'POST',
        url: `/v2/images/${image.id}/import`,
        headers: who,
        payload: JSON.stringify({ method: { name: 'glance-direct' } }),
      });
      expectStatus(started, 202);
      const task = await finishedTask(t, image.id, who);
      assert.equal(task.status, 'failure');
      assert.match(task.message, /exceeds the storage quota/);
      await assertQueuedWithoutData(t, image.id, who);
    });

    describe('uploads racing for the last of a 5 MiB quota', () => {
      let racing: TestApp;
      before(async () => {
        racing = await startTestApp(database, { user_storage_quota: '5MB' });
      });
      after(() => racing?.close());

      for (const framing of ['Content-Length', 'chunked'] as const) {
        it(`lets exactly 5 of 20 uploads of 1 MiB (${framing}) in`, async () => {
          const who = freshProject();
          const images = await Promise.all(
            Array.from({ length: 20 }, () => createImage(racing, who)),
          );
          const responses = await Promise.all(
            images.map((image) => {
              const data = randomBytes(MiB);
              const body = framing === 'chunked' ? Readable.from([data]) : data;
              return putData(racing, image.id, who, body);
            }),
          );

          const statuses = responses.map((response) => response.statusCode).sort();
          assert.deepEqual(statuses, [...Array(5).fill(204), ...Array(15).fill(413)]);
          for (const [index, response] of responses.entries()) {
            const image = images[index];
            assert.ok(image);
            if (response.statusCode === 204) continue;
            assertOverStorageQuota(response);
            await assertQueuedWithoutData(racing, image.id, who);
          }
          const stored = (await filesUnder(join(racing.dataDir, 'images'))).filter((file) =>
            images.some((image) => file.path.includes(image.id)),
          );
          assert.equal(stored.length, 5);
          assert.equal(
            stored.reduce((sum, file) => sum + file.size, 0),
            5 * MiB,
          );
        });
      }
    });
  });
}
