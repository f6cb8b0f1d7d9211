/**
 * Keystone unified limits inside the import flow, against the real Keystone. As upstream, an
 * import task checks the caller's project once the image is importing and before any data
 * moves: glance-direct on image_size_total with the staged size, the methods that stage
 * (web-download and copy-image here) on image_stage_total with the image's size, then on
 * image_count_uploading. A refusal fails the task with the limit's message, puts the image
 * back to queued (copy-image: leaves it active) and leaves nothing of it staged.
 *
 * alpha's limits are those of test/support/keystone-limits.ts: 2 MiB stored, 1 MiB staged,
 * one image uploading. Another project's admin can stage or store data in alpha's images, as
 * limits apply to the caller's project, which takes alpha past a limit without alpha asking.
 *
 * Needs Keystone on 127.0.0.1:5000 (scripts/keystone.sh start); without it the suite is
 * skipped, except under CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import { assertImportBookkeeping } from '../support/imports.js';
import {
  ADMIN_PASSWORD,
  getToken,
  keystoneAppOptions,
  keystoneProblem,
  type KeystoneToken,
} from '../support/keystone.js';
import {
  ensureAlphaLimits,
  ensureDefaultLimits,
  overLimitMessage,
} from '../support/keystone-limits.js';
import { expectStatus, newRawImage, sendAs } from '../support/token-requests.js';
import { startWebServer, type WebServer } from '../support/web-server.js';

type Image = Record<string, unknown> & { id: string; status: string };
type Task = Record<string, unknown> & { id: string; status: string; message: string };

const MiB = 1024 * 1024;
const TASK_TIMEOUT_MS = 20_000;
const SOURCE = '/source.raw';

const problem = await keystoneProblem();
const databases = await testDatabases();

describe('Keystone unified limits in the import flow', { skip: problem ?? false }, () => {
  let alphaId = '';
  let alpha: KeystoneToken;
  let alphaAdmin: KeystoneToken;
  let admin: KeystoneToken;
  let web: WebServer;

  before(async () => {
    alphaId = await ensureAlphaLimits(await ensureDefaultLimits());
    alpha = await getToken('alpha-member', 'alpha');
    alphaAdmin = await getToken('alpha-admin', 'alpha');
    admin = await getToken('admin', 'admin', ADMIN_PASSWORD);
    web = await startWebServer();
    web.files.set(SOURCE, Buffer.alloc(MiB / 2, 3));
  });
  after(() => web?.close());

  for (const database of databases) {
    describe(`on ${database.name}`, { skip: database.skip ?? false }, () => {
      // A fresh database for each case: each starts from no usage.
      let t: TestApp;
      beforeEach(async () => {
        t = await startTestApp(
          database,
          keystoneAppOptions({
            use_keystone_limits: true,
            // Several stores, so that copy-image is offered and the import's bookkeeping of
            // target stores shows.
            enabled_backends: ['cheap:file', 'fast:file'],
            default_backend: 'cheap',
            enabled_import_methods: ['glance-direct', 'web-download', 'copy-image'],
            allowed_hosts: ['127.0.0.1'],
            allowed_ports: [String(web.port)],
          }),
        );
      });
      afterEach(() => t?.close());

      const newImage = () => newRawImage(t, alpha);

      /** A new image of alpha's holding `size` bytes, stored or staged by `by`. */
      async function imageWith(size: number, target: 'file' | 'stage', by = alpha) {
        const id = await newImage();
        await expectStatus(
          sendAs(t, by, 'PUT', `/v2/images/${id}/${target}`, Buffer.alloc(size, 1)),
          204,
        );
        return id;
      }

      async function startImport(id: string, method: object, by = alpha, stores?: string[]) {
        await expectStatus(
          sendAs(t, by, 'POST', `/v2/images/${id}/import`, { method, stores }),
          202,
        );
      }

      async function showImage(id: string): Promise<Image> {
        return json<Image>(await expectStatus(sendAs(t, alpha, 'GET', `/v2/images/${id}`), 200));
      }

      /** The image's import task once it has finished. */
      async function finishedTask(id: string): Promise<Task> {
        const deadline = Date.now() + TASK_TIMEOUT_MS;
        for (;;) {
          const answer = await expectStatus(
            sendAs(t, admin, 'GET', `/v2/images/${id}/tasks`),
            200,
          );
          const task = json<{ tasks: Task[] }>(answer).tasks[0];
          if (task && (task.status === 'success' || task.status === 'failure')) return task;
          if (Date.now() > deadline) assert.fail(`the import of ${id} did not finish`);
          await sleep(25);
        }
      }

      /** Files of the image in staging, whole or partial. */
      async function staged(id: string): Promise<string[]> {
        const found: string[] = [];
        for (const dir of [join(t.dataDir, 'staging'), join(t.dataDir, 'staging', '.partial')]) {
          const names = await readdir(dir).catch(() => [] as string[]);
          found.push(...names.filter((name) => name === id || name.startsWith(`${id}.`)));
        }
        return found;
      }

      /**
       * What a refused import leaves: the task failed with `message`, the image as before
       * (queued, or active for copy-image) with its copies, no longer importing to its
       * target stores nor marked as failed in them, and nothing of it staged.
       */
      async function assertRefused(id: string, message: string, before = 'queued') {
        const task = await finishedTask(id);
        assert.equal(task.status, 'failure');
        assert.equal(task.message, message);
        const image = await showImage(id);
        assert.equal(image.status, before);
        assertImportBookkeeping(image);
        assert.equal(image.stores, before === 'active' ? 'cheap' : undefined);
        assert.deepEqual(await staged(id), []);
      }

      it('fails a web-download past image_stage_total, naming that limit only', async () => {
        // alpha is now over both image_stage_total (2 MiB) and image_count_uploading (one
        // image, two with the import's): upstream checks staging first and stops there.
        const stagedByAdmin = await imageWith(2 * MiB, 'stage', admin);
        const requestsBefore = web.requests.length;

        const id = await newImage();
        await startImport(id, { name: 'web-download', uri: web.url(SOURCE) });
        await assertRefused(id, overLimitMessage(alphaId, 'image_stage_total', 2, 0));
        assert.equal(web.requests.length, requestsBefore, 'the source was read');
        assert.equal((await showImage(stagedByAdmin)).status, 'uploading');
        assert.equal((await staged(stagedByAdmin)).length, 1);
      });

      it('fails a web-download past image_count_uploading', async () => {
        const stagedImage = await imageWith(MiB, 'stage');

        const id = await newImage();
        await startImport(id, { name: 'web-download', uri: web.url(SOURCE) });
        await assertRefused(id, overLimitMessage(alphaId, 'image_count_uploading', 2, 0));
        assert.equal((await showImage(stagedImage)).status, 'uploading');
      });

      it('fails a glance-direct whose staged data passes image_size_total', async () => {
        // The import request itself passes: alpha is at its limit, not over it.
        await imageWith(2 * MiB, 'file');
        const id = await imageWith(MiB, 'stage');

        await startImport(id, { name: 'glance-direct' });
        await assertRefused(id, overLimitMessage(alphaId, 'image_size_total', 2, 1));
      });

      it('fails a copy-image whose staged copy would pass image_stage_total', async () => {
        // The image being copied counts as staged already, and its size is staged again:
        // 1 MiB staged plus 1 MiB more passes the 1 MiB limit.
        const id = await imageWith(MiB, 'file');
        // copy-image is for admins; alpha's own admin, so that alpha's limits apply.
        await startImport(id, { name: 'copy-image' }, alphaAdmin, ['fast']);
        await assertRefused(id, overLimitMessage(alphaId, 'image_stage_total', 1, 1), 'active');
      });

      it('checks the project of the caller, not of the image, as upstream', async () => {
        await imageWith(2 * MiB, 'file');
        const id = await imageWith(MiB, 'stage');

        await startImport(id, { name: 'glance-direct' }, admin);
        const task = await finishedTask(id);
        assert.equal(task.status, 'success', task.message);
        assert.equal((await showImage(id)).status, 'active');
      });
    });
  }
});
