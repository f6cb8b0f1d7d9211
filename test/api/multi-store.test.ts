/**
 * Several named stores through the API, with stores that need no outside server: two file
 * stores of different weights and a read-only http store served by a local web server.
 * Covers store discovery, the store headers, upload to a named store, copy-image, imports to
 * several stores (all_stores, all_stores_must_succeed), download order and `?prefer=`,
 * falling through to another copy, delete-from-store with its last-copy rule, and the
 * versions a multi-store deployment lists. The same API against Swift and S3 is in
 * multi-store-peers.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import { FAILED_IMPORT, IMPORTING_TO, LOCK, withDatabase } from '../support/imports.js';
import { startWebServer, type WebServer } from '../support/web-server.js';

type Headers = Record<string, string>;
type Image = Record<string, unknown> & { id: string; status: string; stores?: string };

const ALICE = asProject('alice');
const ADMIN = asProject('admin-project', 'admin');
const RAW_BARE = { disk_format: 'raw', container_format: 'bare' };
const TASK_TIMEOUT_MS = 20_000;

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');

class Client {
  constructor(readonly t: TestApp) {}

  async create(headers: Headers = ALICE, body: object = RAW_BARE) {
    const response = await this.t.request({
      method: 'POST',
      url: '/v2/images',
      headers,
      payload: body,
    });
    assert.equal(response.statusCode, 201, response.body);
    return { image: json<Image>(response), headers: response.headers };
  }

  async show(id: string, headers: Headers = ALICE): Promise<Image> {
    const response = await this.t.request({ method: 'GET', url: `/v2/images/${id}`, headers });
    assert.equal(response.statusCode, 200, response.body);
    return json<Image>(response);
  }

  upload(id: string, data: Buffer, headers: Headers = ALICE) {
    return this.t.request({
      method: 'PUT',
      url: `/v2/images/${id}/file`,
      headers: { ...headers, 'content-type': 'application/octet-stream' },
      payload: data,
    });
  }

  async uploaded(data: Buffer, store?: string): Promise<Image> {
    const { image } = await this.create();
    const extra: Headers = store ? { 'x-image-meta-store': store } : {};
    const response = await this.upload(image.id, data, { ...ALICE, ...extra });
    assert.equal(response.statusCode, 204, response.body);
    return this.show(image.id);
  }

  importImage(id: string, body: object, headers: Headers = ALICE) {
    return this.t.request({
      method: 'POST',
      url: `/v2/images/${id}/import`,
      headers,
      payload: body,
    });
  }

  /** Waits until the image's newest task ends, and returns the image then. */
  async settled(id: string): Promise<{ image: Image; task: Record<string, unknown> }> {
    const deadline = Date.now() + TASK_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const response = await this.t.request({
        method: 'GET',
        url: `/v2/images/${id}/tasks`,
        headers: ADMIN,
      });
      const tasks = json<{ tasks: Array<Record<string, unknown>> }>(response).tasks;
      const task = tasks[0];
      if (task && (task.status === 'success' || task.status === 'failure')) {
        return { image: await this.show(id, ADMIN), task };
      }
      await sleep(50);
    }
    throw new Error(`the task of image ${id} did not end`);
  }

  download(id: string, query = '', headers: Headers = ALICE) {
    return this.t.request({ method: 'GET', url: `/v2/images/${id}/file${query}`, headers });
  }
}

for (const database of await testDatabases()) {
  describe(`several stores on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    let client: Client;
    let web: WebServer;

    before(async () => {
      web = await startWebServer();
      t = await startTestApp(database, {
        enabled_backends: ['fast:file', 'cheap:file', 'broken:file', 'web:http'],
        default_backend: 'cheap',
        store_options: {
          fast: { weight: 100, description: 'Fast disks' },
          cheap: { description: 'Bulk storage' },
          broken: { description: 'A store whose writes fail' },
        },
        show_multiple_locations: true,
        show_image_direct_url: true,
        enabled_import_methods: ['glance-direct', 'copy-image'],
      });
      client = new Client(t);
      // Writes to the broken store fail: its directory for writes in progress is gone.
      await rm(join(t.dataDir, 'stores', 'broken', '.partial'), { recursive: true });
    });
    after(async () => {
      await t.close();
      await web.close();
    });

    const storeFiles = (store: string) =>
      readdir(join(t.dataDir, 'stores', store)).then((names) =>
        names.filter((name) => !name.startsWith('.')),
      );

    describe('discovery', () => {
      it('lists the stores with the default and the read-only one marked', async () => {
        const response = await t.request({
          method: 'GET',
          url: '/v2/info/stores',
          headers: ALICE,
        });
        assert.equal(response.statusCode, 200);
        assert.deepEqual(json(response), {
          stores: [
            { id: 'fast', description: 'Fast disks' },
            { id: 'cheap', description: 'Bulk storage', default: 'true' },
            { id: 'broken', description: 'A store whose writes fail' },
            { id: 'web', 'read-only': 'true' },
          ],
        });
      });

      it('shows the detail to admins only', async () => {
        const denied = await t.request({
          method: 'GET',
          url: '/v2/info/stores/detail',
          headers: ALICE,
        });
        assert.equal(denied.statusCode, 403);

        const response = await t.request({
          method: 'GET',
          url: '/v2/info/stores/detail',
          headers: ADMIN,
        });
        assert.equal(response.statusCode, 200);
        const stores = json<{ stores: Array<Record<string, unknown>> }>(response).stores;
        const fast = stores.find((store) => store.id === 'fast');
        assert.equal(fast?.type, 'file');
        assert.equal(fast?.weight, 100);
        const properties = fast?.properties as Record<string, unknown>;
        assert.equal(properties.data_dir, join(t.dataDir, 'stores', 'fast'));
        assert.deepEqual(stores.find((store) => store.id === 'web')?.properties, {});
        assert.equal(stores.find((store) => store.id === 'web')?.type, 'http');
      });

      it('names the stores in the create response and lists the multi-store versions', async () => {
        const { headers } = await client.create();
        assert.equal(headers['openstack-image-store-ids'], 'fast,cheap,broken,web');

        const response = await t.request({ method: 'GET', url: '/versions' });
        const ids = json<{ versions: Array<{ id: string }> }>(response).versions.map((v) => v.id);
        for (const id of ['v2.8', 'v2.10', 'v2.11', 'v2.13', 'v2.17']) assert.ok(ids.includes(id));
      });
    });

    describe('upload', () => {
      it('writes to the default store, or to the one X-Image-Meta-Store names', async () => {
        const data = randomBytes(70_000);
        const plain = await client.uploaded(data);
        assert.equal(plain.stores, 'cheap');
        assert.ok((await storeFiles('cheap')).includes(plain.id));

        const named = await client.uploaded(data, 'fast');
        assert.equal(named.stores, 'fast');
        assert.ok((await storeFiles('fast')).includes(named.id));
        assert.ok(!(await storeFiles('cheap')).includes(named.id));
        const locations = named.locations as Array<{ url: string; metadata: object }>;
        assert.deepEqual(locations[0]?.metadata, { store: 'fast' });
        assert.equal(named.direct_url, locations[0]?.url);
      });

      it('refuses an unknown store with 400 and a read-only one with 410', async () => {
        const { image } = await client.create();
        const unknown = await client.upload(image.id, Buffer.from('x'), {
          ...ALICE,
          'x-image-meta-store': 'nowhere',
        });
        assert.equal(unknown.statusCode, 400);
        assert.match(unknown.body, /Unknown scheme 'nowhere' found in URI/);

        const readOnly = await client.upload(image.id, Buffer.from('x'), {
          ...ALICE,
          'x-image-meta-store': 'web',
        });
        assert.equal(readOnly.statusCode, 410);
        assert.equal((await client.show(image.id)).status, 'queued');
      });

      it('answers 503 naming the store when its write fails, and leaves the image queued', async () => {
        const { image } = await client.create();
        const response = await client.upload(image.id, randomBytes(1000), {
          ...ALICE,
          'x-image-meta-store': 'broken',
        });
        assert.equal(response.statusCode, 503);
        assert.match(response.body, /broken/);
        const after = await client.show(image.id);
        assert.equal(after.status, 'queued');
        assert.equal(after.stores, undefined);
      });
    });

    describe('copy-image', () => {
      it('copies an active image to another store, admins only', async () => {
        const data = randomBytes(150_000);
        const image = await client.uploaded(data);

        const denied = await client.importImage(image.id, {
          method: { name: 'copy-image' },
          stores: ['fast'],
        });
        assert.equal(denied.statusCode, 403);

        const accepted = await client.importImage(
          image.id,
          { method: { name: 'copy-image' }, stores: ['fast'] },
          ADMIN,
        );
        assert.equal(accepted.statusCode, 202, accepted.body);
        const { image: copied, task } = await client.settled(image.id);
        assert.equal(task.status, 'success', String(task.message));
        assert.equal(copied.status, 'active');
        // Reading order: the heavier store first.
        assert.equal(copied.stores, 'fast,cheap');
        assert.equal(copied[IMPORTING_TO], '');
        assert.equal(copied[FAILED_IMPORT], '');
        assert.equal(copied.checksum, md5(data));
        assert.ok((await storeFiles('fast')).includes(image.id));
        assert.deepEqual(await readdir(join(t.dataDir, 'staging')).then(visible), []);

        const again = await client.importImage(
          image.id,
          { method: { name: 'copy-image' }, stores: ['fast'] },
          ADMIN,
        );
        assert.equal(again.statusCode, 400);
        assert.match(again.body, /already present at store 'fast'/);
      });

      it('checks status and stores before queueing', async () => {
        const { image: queued } = await client.create();
        const notActive = await client.importImage(
          queued.id,
          { method: { name: 'copy-image' }, stores: ['fast'] },
          ADMIN,
        );
        assert.equal(notActive.statusCode, 409);

        const image = await client.uploaded(randomBytes(1000));
        const unknown = await client.importImage(
          image.id,
          { method: { name: 'copy-image' }, stores: ['nowhere'] },
          ADMIN,
        );
        assert.equal(unknown.statusCode, 409);

        const both = await t.request({
          method: 'POST',
          url: `/v2/images/${image.id}/import`,
          headers: { ...ADMIN, 'x-image-meta-store': 'fast' },
          payload: { method: { name: 'copy-image' }, all_stores: true },
        });
        assert.equal(both.statusCode, 400);
      });

      it('copies to all stores, recording the one that fails when failures are allowed', async () => {
        const data = randomBytes(20_000);
        const image = await client.uploaded(data);
        const accepted = await client.importImage(
          image.id,
          { method: { name: 'copy-image' }, all_stores: true, all_stores_must_succeed: false },
          ADMIN,
        );
        assert.equal(accepted.statusCode, 202, accepted.body);
        const { image: copied, task } = await client.settled(image.id);
        assert.equal(task.status, 'success', String(task.message));
        assert.equal(copied.stores, 'fast,cheap');
        assert.equal(copied[FAILED_IMPORT], 'broken');
        assert.equal(copied[IMPORTING_TO], '');
      });
    });

    describe('import to several stores', () => {
      async function staged(data: Buffer): Promise<string> {
        const { image } = await client.create();
        const response = await t.request({
          method: 'PUT',
          url: `/v2/images/${image.id}/stage`,
          headers: { ...ALICE, 'content-type': 'application/octet-stream' },
          payload: data,
        });
        assert.equal(response.statusCode, 204, response.body);
        return image.id;
      }

      it('writes a glance-direct import to every store asked for', async () => {
        const data = randomBytes(40_000);
        const id = await staged(data);
        const accepted = await client.importImage(id, {
          method: { name: 'glance-direct' },
          stores: ['cheap', 'fast'],
        });
        assert.equal(accepted.statusCode, 202, accepted.body);
        const { image } = await client.settled(id);
        assert.equal(image.status, 'active');
        assert.equal(image.stores, 'fast,cheap');
        assert.equal(image.size, data.length);
      });

      it('stages whatever store X-Image-Meta-Store names: upstream ignores it there', async () => {
        const { image } = await client.create();
        const response = await t.request({
          method: 'PUT',
          url: `/v2/images/${image.id}/stage`,
          headers: {
            ...ALICE,
            'content-type': 'application/octet-stream',
            'x-image-meta-store': 'nowhere',
          },
          payload: randomBytes(1000),
        });
        assert.equal(response.statusCode, 204, response.body);
        const staged = await client.show(image.id);
        assert.equal(staged.status, 'uploading');
        // The import, not the stage, picks the stores: the default here.
        await client.importImage(image.id, { method: { name: 'glance-direct' } });
        const { image: imported } = await client.settled(image.id);
        assert.equal(imported.status, 'active');
        assert.equal(imported.stores, 'cheap');
      });

      it('fails the whole import when a store fails and all must succeed', async () => {
        const id = await staged(randomBytes(30_000));
        await client.importImage(id, {
          method: { name: 'glance-direct' },
          stores: ['fast', 'broken'],
        });
        const { image, task } = await client.settled(id);
        assert.equal(task.status, 'failure');
        assert.equal(image.status, 'queued');
        // As upstream: the store that failed is recorded; the one whose copy was rolled back
        // is not (its write had succeeded).
        assert.equal(image[FAILED_IMPORT], 'broken');
        assert.equal(image[IMPORTING_TO], '');
        assert.equal(image.stores, undefined);
        assert.ok(!(await storeFiles('fast')).includes(id), 'the copy written first is removed');
      });

      it('activates with the stores that worked when failures are allowed', async () => {
        const id = await staged(randomBytes(30_000));
        await client.importImage(id, {
          method: { name: 'glance-direct' },
          stores: ['broken', 'fast'],
          all_stores_must_succeed: false,
        });
        const { image, task } = await client.settled(id);
        assert.equal(task.status, 'success', String(task.message));
        assert.equal(image.status, 'active');
        assert.equal(image.stores, 'fast');
        assert.equal(image[FAILED_IMPORT], 'broken');
      });
    });

    describe('download and delete from a store', () => {
      let data: Buffer;
      let id: string;

      before(async () => {
        data = randomBytes(100_000);
        id = (await client.uploaded(data, 'cheap')).id;
        await client.importImage(id, { method: { name: 'copy-image' }, stores: ['fast'] }, ADMIN);
        assert.equal((await client.settled(id)).image.stores, 'fast,cheap');
      });

      it('reads the preferred store when asked, and refuses unknown stores', async () => {
        const preferred = await client.download(id, '?prefer=cheap');
        assert.equal(preferred.statusCode, 200);
        assert.ok(preferred.rawPayload.equals(data));

        const unknown = await client.download(id, '?prefer=nowhere');
        assert.equal(unknown.statusCode, 400);
        assert.match(unknown.body, /Store 'nowhere' is not configured/);
      });

      it('falls through to the next copy when the first is missing', async () => {
        const other = await client.uploaded(randomBytes(5000), 'cheap');
        await client.importImage(
          other.id,
          { method: { name: 'copy-image' }, stores: ['fast'] },
          ADMIN,
        );
        await client.settled(other.id);
        await rm(join(t.dataDir, 'stores', 'fast', other.id));

        const response = await client.download(other.id);
        assert.equal(response.statusCode, 200);
        assert.equal(md5(response.rawPayload), (await client.show(other.id)).checksum);
      });

      it('deletes one copy, admins only, never the last one', async () => {
        const url = `/v2/stores/fast/${id}`;
        const denied = await t.request({ method: 'DELETE', url, headers: ALICE });
        assert.equal(denied.statusCode, 403);

        const unknown = await t.request({
          method: 'DELETE',
          url: `/v2/stores/nowhere/${id}`,
          headers: ADMIN,
        });
        assert.equal(unknown.statusCode, 409);

        const removed = await t.request({ method: 'DELETE', url, headers: ADMIN });
        assert.equal(removed.statusCode, 204, removed.body);
        assert.equal((await client.show(id)).stores, 'cheap');
        assert.ok(!existsSync(join(t.dataDir, 'stores', 'fast', id)));

        const last = await t.request({
          method: 'DELETE',
          url: `/v2/stores/cheap/${id}`,
          headers: ADMIN,
        });
        assert.equal(last.statusCode, 403);
        assert.match(last.body, /only store containing it/);

        const download = await client.download(id);
        assert.ok(download.rawPayload.equals(data));
      });
    });

    describe('locations', () => {
      it('adds an http location through PATCH, making a queued image active', async () => {
        const data = randomBytes(12_345);
        web.files.set('/disk.raw', data);
        const { image } = await client.create();
        const response = await t.request({
          method: 'PATCH',
          url: `/v2/images/${image.id}`,
          headers: { ...ADMIN, 'content-type': 'application/openstack-images-v2.1-json-patch' },
          payload: [
            {
              op: 'add',
              path: '/locations/-',
              value: { url: web.url('/disk.raw'), metadata: {} },
            },
          ],
        });
        assert.equal(response.statusCode, 200, response.body);
        const patched = json<Image>(response);
        assert.equal(patched.status, 'active');
        assert.equal(patched.size, data.length);
        assert.equal(patched.stores, 'web');

        const download = await client.download(image.id);
        assert.ok(download.rawPayload.equals(data));
      });

      it('refuses local files and missing data', async () => {
        const { image } = await client.create();
        const patch = (value: object) =>
          t.request({
            method: 'PATCH',
            url: `/v2/images/${image.id}`,
            headers: {
              ...ADMIN,
              'content-type': 'application/openstack-images-v2.1-json-patch',
            },
            payload: [{ op: 'add', path: '/locations/-', value }],
          });
        const file = await patch({ url: 'file:///etc/passwd', metadata: {} });
        assert.equal(file.statusCode, 400);
        assert.match(file.body, /Invalid location/);
        const missing = await patch({ url: web.url('/nothing'), metadata: {} });
        assert.equal(missing.statusCode, 400);
        assert.equal((await client.show(image.id)).status, 'queued');
      });

      it('adds a location through POST and checks the vouched hash from the data', async () => {
        const data = randomBytes(9_999);
        web.files.set('/vouched.raw', data);
        const { image } = await client.create();
        const sha512 = createHash('sha512').update(data).digest('hex');
        const response = await t.request({
          method: 'POST',
          url: `/v2/images/${image.id}/locations`,
          headers: ALICE,
          payload: {
            url: web.url('/vouched.raw'),
            validation_data: { os_hash_algo: 'sha512', os_hash_value: sha512 },
          },
        });
        assert.equal(response.statusCode, 202, response.body);
        const { image: added, task } = await client.settled(image.id);
        assert.equal(task.status, 'success', String(task.message));
        assert.equal(added.status, 'active');
        assert.equal(added.os_hash_value, sha512);
        assert.equal(added.checksum, md5(data));

        const listed = await t.request({
          method: 'GET',
          url: `/v2/images/${image.id}/locations`,
          headers: ADMIN,
        });
        assert.deepEqual(json(listed), [
          { url: web.url('/vouched.raw'), metadata: { store: 'web' } },
        ]);
        const denied = await t.request({
          method: 'GET',
          url: `/v2/images/${image.id}/locations`,
          headers: ALICE,
        });
        assert.equal(denied.statusCode, 403);
      });

      it('drops a location whose data does not match the vouched hash', async () => {
        web.files.set('/liar.raw', randomBytes(5000));
        const { image } = await client.create();
        const response = await t.request({
          method: 'POST',
          url: `/v2/images/${image.id}/locations`,
          headers: ALICE,
          payload: {
            url: web.url('/liar.raw'),
            validation_data: { os_hash_algo: 'sha256', os_hash_value: 'ab'.repeat(32) },
          },
        });
        assert.equal(response.statusCode, 202, response.body);
        const { image: after, task } = await client.settled(image.id);
        assert.equal(task.status, 'failure');
        assert.equal(after.status, 'queued');
        assert.deepEqual(after.locations, []);
        assert.equal(after.os_glance_import_task, undefined);
      });
    });
  });

  describe(`a stale copy-image lock on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    let client: Client;

    before(async () => {
      t = await startTestApp(database, {
        enabled_backends: ['origin:file', 'north:file', 'east:file', 'west:file', 'south:file'],
        default_backend: 'origin',
        enabled_import_methods: ['copy-image'],
      });
      client = new Client(t);
    });
    after(() => t?.close());

    it('breaks it and removes its stores from the progress lists', async () => {
      const data = randomBytes(10_000);
      const image = await client.uploaded(data);
      // A copy to east and west whose process died three hours ago: its write to west had
      // failed, the one to east was under way. north failed in an earlier, finished copy.
      const stale = await abandonedCopy(t, image.id, ['east', 'west']);
      await withDatabase(t, (db) =>
        db
          .insertInto('image_properties')
          .values([
            { image_id: image.id, name: LOCK, value: stale },
            { image_id: image.id, name: IMPORTING_TO, value: 'east' },
            { image_id: image.id, name: FAILED_IMPORT, value: 'west,north' },
          ])
          .execute(),
      );

      const copy = { method: { name: 'copy-image' }, stores: ['south'] };
      const accepted = await client.importImage(image.id, copy, ADMIN);
      assert.equal(accepted.statusCode, 202, accepted.body);
      const { image: copied, task } = await client.settled(image.id);
      assert.equal(task.status, 'success', String(task.message));
      assert.equal(copied.stores, 'origin,south');
      assert.equal(copied[LOCK], undefined);
      // What the dead copy left is gone; the earlier failure is not the new copy's business.
      assert.equal(copied[IMPORTING_TO], '');
      assert.equal(copied[FAILED_IMPORT], 'north');

      const preempted = await withDatabase(t, (db) =>
        db.selectFrom('tasks').selectAll().where('id', '=', stale).executeTakeFirstOrThrow(),
      );
      assert.equal(preempted.status, 'failure');
      assert.equal(preempted.message, 'Expired lock preempted');
    });
  });
}

/**
 * A copy-image task row left `processing` three hours ago by this app's own worker (so the
 * runner does not requeue it), writing to `stores`; returns its id.
 */
async function abandonedCopy(t: TestApp, imageId: string, stores: string[]): Promise<string> {
  const id = randomUUID();
  const longAgo = new Date(Date.now() - 3 * 3_600_000).toISOString();
  const input = {
    image_id: imageId,
    import_req: { method: { name: 'copy-image' }, stores },
    backend: stores,
  };
  await withDatabase(t, (db) =>
    db
      .insertInto('tasks')
      .values({
        id,
        type: 'api_image_import',
        status: 'processing',
        owner: 'admin-project',
        image_id: imageId,
        request_id: null,
        user_id: null,
        input: JSON.stringify(input),
        result: null,
        message: '',
        expires_at: null,
        created_at: longAgo,
        updated_at: longAgo,
        deleted: 0,
        deleted_at: null,
        worker_id: t.app.workerId,
        attempts: 1,
      })
      .execute(),
  );
  return id;
}

function visible(names: string[]): string[] {
  return names.filter((name) => !name.startsWith('.'));
}

describe('location quotas', () => {
  let t: TestApp;
  let web: WebServer;
  const patch = (id: string, operations: object[]) =>
    t.request({
      method: 'PATCH',
      url: `/v2/images/${id}`,
      headers: { ...ADMIN, 'content-type': 'application/openstack-images-v2.1-json-patch' },
      payload: operations,
    });
  const create = async (owner = ALICE) => {
    const response = await t.request({
      method: 'POST',
      url: '/v2/images',
      headers: owner,
      payload: RAW_BARE,
    });
    return json<Image>(response).id;
  };

  before(async () => {
    web = await startWebServer();
    for (const name of ['a', 'b', 'c']) web.files.set(`/${name}`, randomBytes(6000));
    web.files.set('/big', randomBytes(15_000));
    const [sqlite] = await testDatabases();
    t = await startTestApp(sqlite!, {
      enabled_backends: ['local:file', 'web:http'],
      default_backend: 'local',
      show_multiple_locations: true,
      image_location_quota: 2,
      user_storage_quota: '20000B',
    });
  });
  after(async () => {
    await t.close();
    await web.close();
  });

  it('refuses more locations than image_location_quota, added or replaced', async () => {
    const id = await create();
    const add = (path: string) => ({
      op: 'add',
      path: '/locations/-',
      value: { url: web.url(path), metadata: {} },
    });
    assert.equal((await patch(id, [add('/a')])).statusCode, 200);
    assert.equal((await patch(id, [add('/b')])).statusCode, 200);
    const third = await patch(id, [add('/c')]);
    assert.equal(third.statusCode, 413);
    assert.match(third.body, /Attempted: 3, Maximum: 2/);

    const other = await create();
    const replace = await patch(other, [
      {
        op: 'replace',
        path: '/locations',
        value: ['/a', '/b', '/c'].map((path) => ({ url: web.url(path), metadata: {} })),
      },
    ]);
    assert.equal(replace.statusCode, 413);
    const shown = json<Image>(
      await t.request({ method: 'GET', url: `/v2/images/${other}`, headers: ADMIN }),
    );
    assert.equal(shown.status, 'queued');
    assert.deepEqual(shown.locations, []);
  });

  it("counts each added copy against the owner's user_storage_quota", async () => {
    const bob = asProject('bob');
    const id = await create(bob);
    const big = { op: 'add', path: '/locations/-', value: { url: web.url('/big'), metadata: {} } };
    assert.equal((await patch(id, [big])).statusCode, 200);

    // 15,000 of bob's 20,000 bytes are used by the first image; 6,000 more do not fit.
    const other = await create(bob);
    const refused = await patch(other, [
      { op: 'add', path: '/locations/-', value: { url: web.url('/a'), metadata: {} } },
    ]);
    assert.equal(refused.statusCode, 413, refused.body);
    assert.match(refused.body, /storage quota/);
  });
});

/**
 * PATCH of /locations with show_multiple_locations, code by code as upstream answers: its
 * validation_data is trusted once well formed (only the POST /locations API reads the data),
 * and a location removed takes its data out of the store.
 */
describe('PATCH of /locations', () => {
  let t: TestApp;
  let web: WebServer;
  const data = randomBytes(7000);
  const sha512 = createHash('sha512').update(data).digest('hex');

  const patch = (id: string, operations: object[], headers: Headers = ADMIN) =>
    t.request({
      method: 'PATCH',
      url: `/v2/images/${id}`,
      headers: { ...headers, 'content-type': 'application/openstack-images-v2.1-json-patch' },
      payload: operations,
    });
  const add = (path: string, extra: object = {}) => ({
    op: 'add',
    path: '/locations/-',
    value: { url: web.url(path), metadata: {}, ...extra },
  });
  const show = async (id: string) =>
    json<Image>(await t.request({ method: 'GET', url: `/v2/images/${id}`, headers: ADMIN }));
  const create = async () => {
    const response = await t.request({
      method: 'POST',
      url: '/v2/images',
      headers: ALICE,
      payload: RAW_BARE,
    });
    return json<Image>(response).id;
  };
  /** An active image whose only location is in the local file store. */
  const uploaded = async () => {
    const id = await create();
    const response = await t.request({
      method: 'PUT',
      url: `/v2/images/${id}/file`,
      headers: { ...ALICE, 'content-type': 'application/octet-stream' },
      payload: data,
    });
    assert.equal(response.statusCode, 204, response.body);
    return id;
  };

  before(async () => {
    web = await startWebServer();
    for (const name of ['a', 'b']) web.files.set(`/${name}`, data);
    const [sqlite] = await testDatabases();
    t = await startTestApp(sqlite!, {
      enabled_backends: ['local:file', 'web:http'],
      default_backend: 'local',
      show_multiple_locations: true,
      show_image_direct_url: true,
      hashing_algorithm: 'sha512',
    });
  });
  after(async () => {
    await t.close();
    await web.close();
  });

  describe('validation_data', () => {
    it('is taken as vouched on a queued image, even when the data differs', async () => {
      const id = await create();
      const vouched = {
        checksum: 'ab'.repeat(16),
        os_hash_algo: 'sha512',
        os_hash_value: 'cd'.repeat(64),
      };
      const response = await patch(id, [add('/a', { validation_data: vouched })]);
      assert.equal(response.statusCode, 200, response.body);
      const image = json<Image>(response);
      assert.equal(image.status, 'active');
      assert.equal(image.checksum, vouched.checksum);
      assert.equal(image.os_hash_value, vouched.os_hash_value);
      assert.equal(image.size, data.length);
    });

    it('must match what an image that is not queued already has (409)', async () => {
      const id = await uploaded();
      const same = { os_hash_algo: 'sha512', os_hash_value: sha512 };
      const matching = await patch(id, [add('/a', { validation_data: same })]);
      assert.equal(matching.statusCode, 200, matching.body);

      const other = { os_hash_algo: 'sha512', os_hash_value: 'ef'.repeat(64) };
      const differing = await patch(id, [add('/b', { validation_data: other })]);
      assert.equal(differing.statusCode, 409, differing.body);
      assert.match(differing.body, /os_hash_value is already set with a different value/);
    });

    it('brings no new values to an image that is not queued (409)', async () => {
      const id = await create();
      assert.equal((await patch(id, [add('/a')])).statusCode, 200);
      const vouched = { os_hash_algo: 'sha512', os_hash_value: sha512 };
      const response = await patch(id, [add('/b', { validation_data: vouched })]);
      assert.equal(response.statusCode, 409, response.body);
      assert.match(response.body, /may only be provided when image status is 'queued'/);
      assert.equal((await show(id)).os_hash_value, null);
    });

    it('refuses another os_hash_algo, bad hex and wrong sizes', async () => {
      const id = await create();
      const cases: Array<[object, number, RegExp]> = [
        [
          { os_hash_algo: 'sha256', os_hash_value: 'ab'.repeat(32) },
          409,
          /os_hash_algo must be sha512, not sha256/,
        ],
        [
          { os_hash_algo: 'sha512', os_hash_value: 'zz'.repeat(64) },
          409,
          /os_hash_value \(z+\) is not a valid hexadecimal value/,
        ],
        [
          { os_hash_algo: 'sha512', os_hash_value: 'ab'.repeat(32) },
          409,
          /is not the correct size for sha512 \(should be 64 bytes\)/,
        ],
        [
          { checksum: 'xy'.repeat(16), os_hash_algo: 'sha512', os_hash_value: sha512 },
          409,
          /checksum \(x[xy]+\) is not a valid hexadecimal value/,
        ],
        // The image schema's own limits come first: 400.
        [{ checksum: 'ab', os_hash_algo: 'sha512', os_hash_value: sha512 }, 400, /checksum/],
        [{ os_hash_value: sha512 }, 400, /os_hash_algo/],
        [{ os_hash_algo: 'sha512', os_hash_value: sha512, size: 1 }, 400, /validation_data/],
      ];
      for (const [validation_data, status, message] of cases) {
        const response = await patch(id, [add('/a', { validation_data })]);
        assert.equal(
          response.statusCode,
          status,
          `${JSON.stringify(validation_data)}: ${response.body}`,
        );
        assert.match(response.body, message);
      }
      assert.equal((await show(id)).status, 'queued');
    });
  });

  describe('replace', () => {
    it('only changes metadata of the URLs the image has (else 400)', async () => {
      const id = await create();
      assert.equal((await patch(id, [add('/a')])).statusCode, 200);
      const replace = (paths: string[]) =>
        patch(id, [
          {
            op: 'replace',
            path: '/locations',
            value: paths.map((path) => ({ url: web.url(path), metadata: { note: 'kept' } })),
          },
        ]);

      const changed = await replace(['/b']);
      assert.equal(changed.statusCode, 400, changed.body);
      assert.match(changed.body, /Original locations is not empty/);
      const widened = await replace(['/a', '/b']);
      assert.equal(widened.statusCode, 400, widened.body);

      const same = await replace(['/a']);
      assert.equal(same.statusCode, 200, same.body);
      const locations = json<Image>(same).locations as Array<{ metadata: object }>;
      assert.deepEqual(locations[0]?.metadata, { note: 'kept', store: 'web' });
    });

    it('refuses an empty list with 403', async () => {
      const id = await uploaded();
      const response = await patch(id, [{ op: 'replace', path: '/locations', value: [] }]);
      assert.equal(response.statusCode, 403, response.body);
      assert.match(response.body, /Cannot set locations to empty list/);
      assert.equal((await show(id)).status, 'active');
    });
  });

  describe('remove', () => {
    it('is for admins, never takes the last location, and deletes the data', async () => {
      const id = await uploaded();
      const file = join(t.dataDir, 'stores', 'local', id);
      const removeFirst = { op: 'remove', path: '/locations/0' };
      const last = await patch(id, [removeFirst]);
      assert.equal(last.statusCode, 403, last.body);
      assert.match(last.body, /Cannot remove last location in the image/);

      assert.equal((await patch(id, [add('/a')])).statusCode, 200);
      const member = await patch(id, [removeFirst], ALICE);
      assert.equal(member.statusCode, 403, member.body);
      const outside = await patch(id, [{ op: 'remove', path: '/locations/2' }]);
      assert.equal(outside.statusCode, 400, outside.body);
      assert.ok(existsSync(file));

      const removed = await patch(id, [removeFirst]);
      assert.equal(removed.statusCode, 200, removed.body);
      const image = json<Image>(removed);
      assert.deepEqual(
        (image.locations as Array<{ url: string }>).map((location) => location.url),
        [web.url('/a')],
      );
      assert.equal(image.stores, 'web');
      assert.ok(!existsSync(file), 'the data of the removed location is still in the store');
      const download = await t.request({
        method: 'GET',
        url: `/v2/images/${id}/file`,
        headers: ALICE,
      });
      assert.ok(download.rawPayload.equals(data));
    });
  });

  it('refuses a URL the image has already with 400', async () => {
    const id = await create();
    assert.equal((await patch(id, [add('/a')])).statusCode, 200);
    const again = await patch(id, [add('/a')]);
    assert.equal(again.statusCode, 400, again.body);
    assert.match(again.body, /already exists/);
    const twice = await patch(await create(), [
      {
        op: 'replace',
        path: '/locations',
        value: [add('/b').value, add('/b').value],
      },
    ]);
    assert.equal(twice.statusCode, 400, twice.body);
  });

  it('shows direct_url, the location read first', async () => {
    const id = await uploaded();
    const image = await show(id);
    const locations = image.locations as Array<{ url: string }>;
    assert.equal(image.direct_url, locations[0]?.url);
    assert.match(String(image.direct_url), /^file:\/\//);
  });
});

describe('locations hidden (show_multiple_locations and show_image_direct_url off)', () => {
  let t: TestApp;
  let web: WebServer;

  before(async () => {
    web = await startWebServer();
    web.files.set('/a', randomBytes(3000));
    const [sqlite] = await testDatabases();
    t = await startTestApp(sqlite!, {
      enabled_backends: ['local:file', 'web:http'],
      default_backend: 'local',
    });
  });
  after(async () => {
    await t.close();
    await web.close();
  });

  it('refuses every PATCH of /locations with 403, and shows no direct_url', async () => {
    const created = await t.request({
      method: 'POST',
      url: '/v2/images',
      headers: ALICE,
      payload: RAW_BARE,
    });
    const id = json<Image>(created).id;
    const upload = await t.request({
      method: 'PUT',
      url: `/v2/images/${id}/file`,
      headers: { ...ALICE, 'content-type': 'application/octet-stream' },
      payload: randomBytes(1000),
    });
    assert.equal(upload.statusCode, 204);

    const location = { url: web.url('/a'), metadata: {} };
    const cases: Array<[object, RegExp]> = [
      [
        { op: 'add', path: '/locations/-', value: location },
        /add locations if locations are invisible/,
      ],
      [{ op: 'replace', path: '/locations', value: [location] }, /update locations if locations/],
      [{ op: 'replace', path: '/locations', value: [] }, /Cannot set locations to empty list/],
      [{ op: 'remove', path: '/locations/0' }, /remove locations if locations are invisible/],
    ];
    for (const [operation, message] of cases) {
      const response = await t.request({
        method: 'PATCH',
        url: `/v2/images/${id}`,
        headers: { ...ADMIN, 'content-type': 'application/openstack-images-v2.1-json-patch' },
        payload: [operation],
      });
      assert.equal(response.statusCode, 403, `${JSON.stringify(operation)}: ${response.body}`);
      assert.match(response.body, message);
    }
    const shown = json<Image>(
      await t.request({ method: 'GET', url: `/v2/images/${id}`, headers: ADMIN }),
    );
    assert.equal(shown.status, 'active');
    assert.equal(shown.direct_url, undefined);
    assert.equal(shown.locations, undefined);
  });
});

describe('one store', () => {
  let t: TestApp;
  before(async () => {
    const [sqlite] = await testDatabases();
    t = await startTestApp(sqlite!);
  });
  after(() => t.close());

  it('has no store discovery, no store deletion and no store preference', async () => {
    for (const url of ['/v2/info/stores', '/v2/info/stores/detail']) {
      const response = await t.request({ method: 'GET', url, headers: ADMIN });
      assert.equal(response.statusCode, 404, url);
    }
    const created = await t.request({
      method: 'POST',
      url: '/v2/images',
      headers: ALICE,
      payload: RAW_BARE,
    });
    const id = json<Image>(created).id;
    assert.equal(created.headers['openstack-image-store-ids'], undefined);
    const upload = await t.request({
      method: 'PUT',
      url: `/v2/images/${id}/file`,
      headers: { ...ALICE, 'content-type': 'application/octet-stream' },
      payload: Buffer.from('data'),
    });
    assert.equal(upload.statusCode, 204);

    const remove = await t.request({
      method: 'DELETE',
      url: `/v2/stores/file/${id}`,
      headers: ADMIN,
    });
    assert.equal(remove.statusCode, 404);
    const prefer = await t.request({
      method: 'GET',
      url: `/v2/images/${id}/file?prefer=file`,
      headers: ALICE,
    });
    assert.equal(prefer.statusCode, 400);
    const shown = json<Image>(
      await t.request({ method: 'GET', url: `/v2/images/${id}`, headers: ALICE }),
    );
    assert.equal(shown.stores, undefined);
    assert.equal(shown.locations, undefined);
  });
});
