import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

type Image = Record<string, unknown> & { id: string };

const ALICE = asProject('alice');
const BOB = asProject('bob');
const ALICE_READER = asProject('alice', 'reader');
const ADMIN = asProject('admin-project', 'admin');

for (const database of await testDatabases()) {
  describe(`image records API on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(database, { image_property_quota: 5, image_tag_quota: 3 });
    });
    after(() => t?.close());

    const create = (body: unknown, headers: Record<string, string> = ALICE) =>
      t.request({ method: 'POST', url: '/v2/images', headers, payload: JSON.stringify(body) });

    const createOk = async (body: unknown, headers: Record<string, string> = ALICE) => {
      const response = await create(body, headers);
      assert.equal(response.statusCode, 201, response.body);
      return json<Image>(response);
    };

    const show = (id: string, headers: Record<string, string> = ALICE) =>
      t.request({ method: 'GET', url: `/v2/images/${id}`, headers });

    describe('create', () => {
      it('creates a queued image with upstream defaults and a Location header', async () => {
        const response = await create({ name: 'cirros' });
        assert.equal(response.statusCode, 201);
        const image = json<Image>(response);

        assert.match(
          image.id,
          /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
        );
        assert.equal(response.headers.location, `http://localhost:80/v2/images/${image.id}`);
        assert.match(String(image.created_at), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
        assert.equal(image.updated_at, image.created_at);
        assert.deepEqual(image, {
          id: image.id,
          name: 'cirros',
          status: 'queued',
          visibility: 'shared',
          protected: false,
          os_hidden: false,
          checksum: null,
          os_hash_algo: null,
          os_hash_value: null,
          owner: 'alice',
          size: null,
          virtual_size: null,
          container_format: null,
          disk_format: null,
          min_ram: 0,
          min_disk: 0,
          created_at: image.created_at,
          updated_at: image.updated_at,
          tags: [],
          self: `/v2/images/${image.id}`,
          file: `/v2/images/${image.id}/file`,
          schema: '/v2/schemas/image',
        });
      });

      it('stores every writable field, tags as a set and properties as strings', async () => {
        const image = await createOk({
          name: 'full',
          visibility: 'private',
          protected: true,
          os_hidden: true,
          container_format: 'bare',
          disk_format: 'qcow2',
          min_ram: 512,
          min_disk: 1,
          tags: ['a', 'b', 'a'],
          os_distro: 'ubuntu',
          kernel_id: null,
        });
        const shown = json<Image>(await show(image.id));
        assert.deepEqual(shown, image);
        assert.equal(shown.visibility, 'private');
        assert.equal(shown.min_ram, 512);
        assert.deepEqual([...(shown.tags as string[])].sort(), ['a', 'b']);
        assert.equal(shown.os_distro, 'ubuntu');
        assert.equal(shown.kernel_id, '');
      });

      it('accepts a client-chosen id and never reuses it, even after deletion', async () => {
        const id = 'A5E4F3B2-1234-4abc-8def-0123456789AB';
        const image = await createOk({ id });
        assert.equal(image.id, id.toLowerCase());

        assert.equal((await create({ id })).statusCode, 409);
        const deleted = await t.request({
          method: 'DELETE',
          url: `/v2/images/${image.id}`,
          headers: ALICE,
        });
        assert.equal(deleted.statusCode, 204);
        assert.equal((await create({ id })).statusCode, 409);
      });

      it('refuses ids that are not UUIDs', async () => {
        const response = await create({ id: 'not-a-uuid' });
        assert.equal(response.statusCode, 400);
        assert.match(response.body, /does not match schema 'image'/);
      });

      it('refuses read-only attributes with 403', async () => {
        const readOnly = {
          self: 'x',
          file: 'x',
          schema: 'x',
          direct_url: 'x',
          stores: 'x',
          status: 'active',
          size: 5,
          virtual_size: 5,
          checksum: 'x',
          created_at: 'x',
          updated_at: 'x',
        };
        for (const [key, value] of Object.entries(readOnly)) {
          const response = await create({ [key]: value });
          assert.equal(response.statusCode, 403, `${key}: ${response.body}`);
          assert.match(response.body, new RegExp(`Attribute '${key}' is read-only\\.`));
        }
      });

      it('checks values against the schema before the read-only rule', async () => {
        assert.equal((await create({ status: 'nonsense' })).statusCode, 400);
      });

      it('refuses reserved attributes and the os_glance namespace with 403', async () => {
        for (const key of ['location', 'deleted', 'deleted_at', 'os_glance_foo', 'locations']) {
          const response = await create({ [key]: key === 'locations' ? [] : 'x' });
          assert.equal(response.statusCode, 403, key);
          assert.match(response.body, new RegExp(`Attribute '${key}' is reserved\\.`));
        }
      });

      it('validates values against the image schema', async () => {
        const invalid = [
          { visibility: 'everyone' },
          { name: 'x'.repeat(256) },
          { disk_format: 'floppy' },
          { container_format: 'zip' },
          { protected: 'yes' },
          { min_ram: 'lots' },
          { min_ram: -1 },
          { min_disk: 2 ** 31 },
          { tags: ['x'.repeat(256)] },
          { tags: 'not-a-list' },
          { os_distro: 5 },
          { kernel_id: 'not-a-uuid' },
          { cinder_encryption_key_deletion_policy: 'sometimes' },
          { ['k'.repeat(256)]: 'v' },
        ];
        for (const body of invalid) {
          const response = await create(body);
          assert.equal(response.statusCode, 400, `${JSON.stringify(body)}: ${response.body}`);
        }
      });

      it('refuses characters outside the Basic Multilingual Plane, as upstream does', async () => {
        assert.equal((await create({ name: 'smile \u{1F600}' })).statusCode, 400);
        assert.equal((await create({ ['\u{1F600}']: 'v' })).statusCode, 400);
        assert.equal((await create({ tags: ['\u{1F600}'] })).statusCode, 400);
      });

      it('answers hostile bodies with 400 or 413, never a 500', async () => {
        const cases: Array<[string, number]> = [
          ['', 400],
          ['not json', 400],
          ['[]', 400],
          ['"a string"', 400],
          ['{"name": "nul\\u0000byte"}', 400],
          ['{"name": "lone \\ud800 surrogate"}', 400],
          ['{"\\udc00": "x"}', 400],
          ['['.repeat(100_000) + ']'.repeat(100_000), 400],
          [`{"a":${'{"a":'.repeat(40)}1${'}'.repeat(40)}}`, 400],
          [JSON.stringify({ name: 'x'.repeat(2 * 1024 * 1024) }), 413],
        ];
        for (const [payload, status] of cases) {
          const response = await t.request({
            method: 'POST',
            url: '/v2/images',
            headers: { ...ALICE, 'content-type': 'application/json' },
            payload,
          });
          assert.equal(response.statusCode, status, `${payload.slice(0, 40)}: ${response.body}`);
        }
      });

      it('refuses invalid UTF-8 in the body with 400', async () => {
        const payload = Buffer.concat([
          Buffer.from('{"name": "'),
          Buffer.from([0xff, 0xfe]),
          Buffer.from('"}'),
        ]);
        const response = await t.request({
          method: 'POST',
          url: '/v2/images',
          headers: ALICE,
          payload,
        });
        assert.equal(response.statusCode, 400);
      });

      it('enforces the property and tag quotas with 413', async () => {
        const properties = Object.fromEntries([1, 2, 3, 4, 5, 6].map((n) => [`p${n}`, 'v']));
        assert.equal((await create(properties)).statusCode, 413);
        assert.equal((await create({ tags: ['1', '2', '3', '4'] })).statusCode, 413);
        assert.equal((await create({ tags: ['1', '2', '3'] })).statusCode, 201);
      });

      it('lets only admins create images for another project or public images', async () => {
        const foreign = await create({ owner: 'bob' });
        assert.equal(foreign.statusCode, 403);
        assert.match(foreign.body, /You are not permitted to create images owned by 'bob'/);
        assert.equal((await create({ visibility: 'public' })).statusCode, 403);
        assert.equal((await create({ visibility: 'community' })).statusCode, 201);

        const byAdmin = await createOk({ owner: 'bob', visibility: 'public' }, ADMIN);
        assert.equal(byAdmin.owner, 'bob');
      });

      it('refuses creation to readers', async () => {
        assert.equal((await create({ name: 'x' }, ALICE_READER)).statusCode, 403);
      });
    });

    describe('show', () => {
      it('hides other projects\u2019 private and shared images behind 404', async () => {
        const priv = await createOk({ visibility: 'private' });
        const shared = await createOk({ visibility: 'shared' });
        const community = await createOk({ visibility: 'community' });

        assert.equal((await show(priv.id, BOB)).statusCode, 404);
        assert.equal((await show(shared.id, BOB)).statusCode, 404);
        assert.equal((await show(community.id, BOB)).statusCode, 200);
        assert.equal((await show(priv.id, ADMIN)).statusCode, 200);
        assert.equal((await show(priv.id, ALICE_READER)).statusCode, 200);
      });

      it('answers unknown, malformed and overlong ids with 404', async () => {
        for (const id of [
          '00000000-0000-4000-8000-000000000000',
          'garbage',
          'x'.repeat(300),
          '%E2%82',
          '%00',
        ]) {
          const response = await show(id);
          assert.ok([400, 404].includes(response.statusCode), `${id}: ${response.statusCode}`);
          assert.notEqual(response.statusCode, 500);
        }
      });
    });

    describe('delete', () => {
      it('deletes an image, after which it is gone', async () => {
        const image = await createOk({ name: 'doomed' });
        const response = await t.request({
          method: 'DELETE',
          url: `/v2/images/${image.id}`,
          headers: ALICE,
        });
        assert.equal(response.statusCode, 204);
        assert.equal(response.body, '');
        assert.equal((await show(image.id)).statusCode, 404);

        const again = await t.request({
          method: 'DELETE',
          url: `/v2/images/${image.id}`,
          headers: ALICE,
        });
        assert.equal(again.statusCode, 404);
        assert.match(again.body, /Failed to find image .* to delete/);
      });

      it('refuses to delete a protected image with 403', async () => {
        const image = await createOk({ protected: true });
        const response = await t.request({
          method: 'DELETE',
          url: `/v2/images/${image.id}`,
          headers: ALICE,
        });
        assert.equal(response.statusCode, 403);
        assert.match(response.body, /is protected and cannot be deleted/);
        assert.equal((await show(image.id)).statusCode, 200);
      });

      it('answers 404 to a project that cannot see the image and 403 to one that can', async () => {
        const priv = await createOk({ visibility: 'private' });
        const community = await createOk({ visibility: 'community' });
        const del = (id: string, headers: Record<string, string>) =>
          t.request({ method: 'DELETE', url: `/v2/images/${id}`, headers });

        assert.equal((await del(priv.id, BOB)).statusCode, 404);
        assert.equal((await del(community.id, BOB)).statusCode, 403);
        assert.equal((await del(priv.id, ALICE_READER)).statusCode, 403);
        assert.equal((await del(priv.id, ADMIN)).statusCode, 204);
      });
    });

    describe('deactivate and reactivate', () => {
      it('refuses both on a queued image with 403 and a body with 400', async () => {
        const image = await createOk({ name: 'q' });
        for (const action of ['deactivate', 'reactivate']) {
          const url = `/v2/images/${image.id}/actions/${action}`;
          const response = await t.request({ method: 'POST', url, headers: ALICE });
          assert.equal(response.statusCode, 403, action);
          assert.match(
            response.body,
            new RegExp(`Not allowed to ${action} image in status 'queued'`),
          );

          const withBody = await t.request({ method: 'POST', url, headers: ALICE, payload: '{}' });
          assert.equal(withBody.statusCode, 400);
        }
      });
    });
  });
}
