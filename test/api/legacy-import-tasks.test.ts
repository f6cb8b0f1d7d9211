/**
 * POST /v2/tasks with the legacy `import` type: the task makes an image from
 * `image_properties` and fills it from `import_from`, through the same checks as web-download;
 * a failed import deletes its image, as upstream's does.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import type { LightMyRequestResponse } from 'fastify';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import { startWebServer, type WebServer } from '../support/web-server.js';

type Task = Record<string, unknown> & { id: string; status: string; type: string };

const ADMIN = asProject('admin-project', 'admin');
const ALICE = asProject('alice');
const TASK_TIMEOUT_MS = 20_000;

for (const database of await testDatabases()) {
  describe(`legacy import tasks on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    let web: WebServer;

    before(async () => {
      web = await startWebServer();
      t = await startTestApp(database, {
        allowed_hosts: ['127.0.0.1'],
        allowed_ports: ['80', '443', String(web.port)],
      });
    });
    after(async () => {
      await t?.close();
      await web?.close();
    });

    const post = (body: unknown, headers = ADMIN): Promise<LightMyRequestResponse> =>
      t.request({
        method: 'POST',
        url: '/v2/tasks',
        headers: { ...headers, accept: 'application/json', 'content-type': 'application/json' },
        payload: JSON.stringify(body),
      });

    async function finished(id: string): Promise<Task> {
      const deadline = Date.now() + TASK_TIMEOUT_MS;
      for (;;) {
        const response = await t.request({
          method: 'GET',
          url: `/v2/tasks/${id}`,
          headers: ADMIN,
        });
        const task = json<Task>(response);
        if (task.status === 'success' || task.status === 'failure') return task;
        if (Date.now() > deadline) assert.fail(`task ${id} did not finish`);
        await sleep(25);
      }
    }

    const showImage = (id: string) =>
      t.request({ method: 'GET', url: `/v2/images/${id}`, headers: ADMIN });

    it('creates an image and fills it from import_from', async () => {
      const data = randomBytes(200_000);
      web.files.set('/legacy.raw', data);
      const input = {
        import_from: web.url('/legacy.raw'),
        import_from_format: 'raw',
        image_properties: { name: 'legacy', disk_format: 'raw', container_format: 'bare' },
      };
      const response = await post({ type: 'import', input });
      assert.equal(response.statusCode, 201, response.body);
      const created = json<Task>(response);
      assert.equal(response.headers.location, `http://localhost:80/v2/tasks/${created.id}`);
      assert.equal(created.type, 'import');
      assert.equal(created.status, 'pending');
      assert.deepEqual(created.input, input);

      const task = await finished(created.id);
      assert.equal(task.status, 'success', String(task.message));
      const imageId = (task.result as { image_id: string }).image_id;
      const image = json<Record<string, unknown>>(await showImage(imageId));
      assert.equal(image.status, 'active');
      assert.equal(image.name, 'legacy');
      assert.equal(image.owner, 'admin-project');
      assert.equal(image.checksum, createHash('md5').update(data).digest('hex'));
      assert.equal(image.os_glance_import_task, undefined);
    });

    it('deletes the image of an import that fails', async () => {
      // No image properties: upstream's defaults, qcow2 in bare, which raw data is not.
      web.files.set('/not-qcow2', randomBytes(5000));
      for (const importFrom of [web.url('/not-qcow2'), web.url('/missing')]) {
        const response = await post({ type: 'import', input: { import_from: importFrom } });
        assert.equal(response.statusCode, 201, response.body);
        const task = await finished(json<Task>(response).id);
        assert.equal(task.status, 'failure');
        assert.equal((await showImage(task.image_id as string)).statusCode, 404);
      }
    });

    it('refuses bodies upstream refuses, and other task types', async () => {
      const cases: Array<[unknown, string]> = [
        [{ input: {} }, "Task 'type' is required"],
        [{ type: 'import' }, "Task 'input' is required"],
        [{ type: 'export', input: {} }, 'is not one of'],
        [{ type: 'api_image_import', input: {} }, 'image import and locations APIs'],
        [{ type: 'import', input: {} }, 'Invalid location'],
        [
          { type: 'import', input: { import_from: 'file:///etc/passwd' } },
          'does not pass filtering',
        ],
        [
          { type: 'import', input: { import_from: 'http://169.254.169.254/latest/meta-data' } },
          'does not pass filtering',
        ],
        [
          {
            type: 'import',
            input: { import_from: web.url('/x'), image_properties: { disk_format: 'floppy' } },
          },
          "does not match schema 'image'",
        ],
      ];
      for (const [body, message] of cases) {
        const response = await post(body);
        assert.equal(response.statusCode, 400, `${JSON.stringify(body)}: ${response.body}`);
        assert.ok(response.body.includes(message), `${JSON.stringify(body)}: ${response.body}`);
      }
    });

    it('is for admins only, checked before the body', async () => {
      const response = await post({}, ALICE);
      assert.equal(response.statusCode, 403, response.body);
    });
  });
}
