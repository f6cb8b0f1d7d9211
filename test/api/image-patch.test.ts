import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { asProject, createImage, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

type Image = Record<string, unknown> & { id: string; tags: string[] };

const ALICE = asProject('alice');
const BOB = asProject('bob');
const ALICE_READER = asProject('alice', 'reader');
const ADMIN = asProject('admin-project', 'admin');
const V21 = 'application/openstack-images-v2.1-json-patch';
const V20 = 'application/openstack-images-v2.0-json-patch';

for (const database of await testDatabases()) {
  describe(`image PATCH and tags on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(database, { image_property_quota: 3, image_tag_quota: 2 });
    });
    after(() => t?.close());

    const newImage = (body: Record<string, unknown> = {}) =>
      createImage<Image>(t, { name: 'original', ...body }, ALICE);

    const patch = (
      id: string,
      operations: unknown,
      { type = V21, headers = ALICE }: { type?: string; headers?: Record<string, string> } = {},
    ) =>
      t.request({
        method: 'PATCH',
        url: `/v2/images/${id}`,
        headers: { ...headers, 'content-type': type },
        payload: JSON.stringify(operations),
      });

    describe('PATCH', () => {
      it('answers with the time of the change it saved', async () => {
        const image = await newImage();
        // Timestamps show whole seconds: the change must fall in a later second.
        await sleep(1100);
        const response = await patch(image.id, [{ op: 'replace', path: '/name', value: 'x' }]);
        assert.equal(response.statusCode, 200, response.body);

        const updated = json<Image>(response);
        const shown = json<Image>(
          await t.request({ method: 'GET', url: `/v2/images/${image.id}`, headers: ALICE }),
        );
        assert.notEqual(updated.updated_at, image.updated_at);
        assert.equal(updated.updated_at, shown.updated_at);
      });

      it('replaces core fields, adds and removes properties, and saves once', async () => {
        const image = await newImage({ os_distro: 'ubuntu' });
        const response = await patch(image.id, [
          { op: 'replace', path: '/name', value: 'renamed' },
          { op: 'replace', path: '/min_ram', value: 1024 },
          { op: 'add', path: '/protected', value: true },
          { op: 'add', path: '/hw_disk_bus', value: 'scsi' },
          { op: 'remove', path: '/os_distro' },
          { op: 'replace', path: '/tags', value: ['x', 'y', 'x'] },
        ]);
        assert.equal(response.statusCode, 200, response.body);
        const updated = json<Image>(response);
        assert.equal(updated.name, 'renamed');
        assert.equal(updated.min_ram, 1024);
        assert.equal(updated.protected, true);
        assert.equal(updated.hw_disk_bus, 'scsi');
        assert.equal('os_distro' in updated, false);
        assert.deepEqual([...updated.tags].sort(), ['x', 'y']);

        const shown = json<Image>(
          await t.request({ method: 'GET', url: `/v2/images/${image.id}`, headers: ALICE }),
        );
        assert.deepEqual(
          { ...shown, tags: [...shown.tags].sort() },
          { ...updated, tags: [...updated.tags].sort() },
        );
      });

      it('accepts the v2.0 media type, where add never overwrites', async () => {
        const image = await newImage({ os_distro: 'ubuntu' });
        const added = await patch(image.id, [{ add: '/os_version', value: '22.04' }], {
          type: V20,
        });
        assert.equal(added.statusCode, 200, added.body);
        assert.equal(json<Image>(added).os_version, '22.04');

        const clash = await patch(image.id, [{ add: '/os_distro', value: 'debian' }], {
          type: V20,
        });
        assert.equal(clash.statusCode, 409);
        assert.match(clash.body, /Property os_distro already present\./);

        const replaced = await patch(image.id, [{ replace: '/os_distro', value: 'debian' }], {
          type: `${V20}; charset=UTF-8`,
        });
        assert.equal(json<Image>(replaced).os_distro, 'debian');
      });

      it('refuses other media types with 415 and an Accept-Patch header', async () => {
        const image = await newImage();
        for (const type of ['application/json', 'application/json-patch+json', 'text/plain']) {
          const response = await patch(image.id, [], { type });
          assert.equal(response.statusCode, 415);
          assert.equal(response.headers['accept-patch'], `${V20}, ${V21}`);
          assert.match(
            response.body,
            new RegExp(`The request media type ${type.replace('+', '\\+')} is not supported`),
          );
        }
      });

      it('answers an empty patch with the unchanged image', async () => {
        const image = await newImage();
        const response = await patch(image.id, []);
        assert.equal(response.statusCode, 200);
        assert.equal(json<Image>(response).updated_at, image.updated_at);
      });

      it('applies upstream conflict rules to missing properties and core fields', async () => {
        const image = await newImage();
        const missing = await patch(image.id, [{ op: 'replace', path: '/nope', value: 'x' }]);
        assert.equal(missing.statusCode, 409);
        assert.match(missing.body, /Property nope does not exist\./);

        const removeMissing = await patch(image.id, [{ op: 'remove', path: '/nope' }]);
        assert.equal(removeMissing.statusCode, 409);

        for (const field of ['name', 'tags', 'min_ram', 'visibility']) {
          const response = await patch(image.id, [{ op: 'remove', path: `/${field}` }]);
          assert.equal(response.statusCode, 403, field);
          assert.match(response.body, new RegExp(`Property ${field} may not be removed\\.`));
        }
      });

      it('refuses read-only and reserved paths with 403', async () => {
        const image = await newImage();
        for (const field of [
          'id',
          'status',
          'size',
          'checksum',
          'os_hash_value',
          'created_at',
          'self',
        ]) {
          const response = await patch(image.id, [
            { op: 'replace', path: `/${field}`, value: 'x' },
          ]);
          assert.equal(response.statusCode, 403, field);
          assert.match(response.body, new RegExp(`Attribute '${field}' is read-only\\.`));
        }
        for (const field of ['deleted', 'location', 'os_glance_import_task']) {
          const response = await patch(image.id, [{ op: 'add', path: `/${field}`, value: 'x' }]);
          assert.equal(response.statusCode, 403, field);
        }
      });

      it('refuses malformed documents and pointers with 400', async () => {
        const image = await newImage();
        const bad: unknown[] = [
          { op: 'replace', path: '/name' },
          [{ op: 'move', path: '/name', value: 'x' }],
          [{ path: '/name', value: 'x' }],
          [{ op: 'replace', value: 'x' }],
          [{ op: 'replace', path: 'name', value: 'x' }],
          [{ op: 'replace', path: '/name/', value: 'x' }],
          [{ op: 'replace', path: '//name', value: 'x' }],
          [{ op: 'replace', path: '/na~2me', value: 'x' }],
          [{ op: 'add', path: '/tags/-', value: 'x' }],
          [{ op: 'replace', path: '/a/b', value: 'x' }],
          [{ op: 'replace', path: '/name' }],
          [{ op: 'replace', path: '/visibility', value: 'everyone' }],
          [{ op: 'replace', path: '/min_disk', value: -1 }],
          [{ op: 'add', path: '/os_distro', value: 7 }],
          [{ op: 'add', path: '/hw', value: '\u{1F600}' }],
          ['not an object'],
          [{ op: 'replace', path: 5, value: 'x' }],
        ];
        for (const document of bad) {
          const operations = Array.isArray(document) ? document : document;
          const response = await patch(image.id, operations);
          assert.equal(response.statusCode, 400, `${JSON.stringify(document)}: ${response.body}`);
        }
      });

      it('decodes escaped pointer segments', async () => {
        const image = await newImage();
        const response = await patch(image.id, [{ op: 'add', path: '/a~1b~0c', value: 'v' }]);
        assert.equal(response.statusCode, 200);
        assert.equal(json<Image>(response)['a/b~c'], 'v');
      });

      it('validates every operation before applying any', async () => {
        const image = await newImage();
        const response = await patch(image.id, [
          { op: 'replace', path: '/name', value: 'changed' },
          { op: 'replace', path: '/status', value: 'active' },
        ]);
        assert.equal(response.statusCode, 403);
        const shown = json<Image>(
          await t.request({ method: 'GET', url: `/v2/images/${image.id}`, headers: ALICE }),
        );
        assert.equal(shown.name, 'original');
      });

      it('enforces the property quota only when properties are added', async () => {
        const image = await newImage({ a: '1', b: '2', c: '3' });
        const over = await patch(image.id, [{ op: 'add', path: '/d', value: '4' }]);
        assert.equal(over.statusCode, 413);

        const swap = await patch(image.id, [
          { op: 'remove', path: '/a' },
          { op: 'add', path: '/d', value: '4' },
        ]);
        assert.equal(swap.statusCode, 200, swap.body);
        const tags = await patch(image.id, [
          { op: 'replace', path: '/tags', value: ['1', '2', '3'] },
        ]);
        assert.equal(tags.statusCode, 413);
      });

      it('copes with thousands of operations in one document', async () => {
        const image = await newImage();
        const operations = Array.from({ length: 5000 }, (_, n) => ({
          op: 'replace',
          path: '/name',
          value: `name-${n}`,
        }));
        const response = await patch(image.id, operations);
        assert.equal(response.statusCode, 200);
        assert.equal(json<Image>(response).name, 'name-4999');
      });

      it('applies ownership, visibility and role rules', async () => {
        const image = await newImage({ visibility: 'private' });
        const owner = await patch(image.id, [{ op: 'replace', path: '/owner', value: 'bob' }]);
        assert.equal(owner.statusCode, 403);
        assert.match(owner.body, /Owner can(&#x27;|')t be updated by non admin\./);

        const publicize = await patch(image.id, [
          { op: 'replace', path: '/visibility', value: 'public' },
        ]);
        assert.equal(publicize.statusCode, 403);
        const community = await patch(image.id, [
          { op: 'replace', path: '/visibility', value: 'community' },
        ]);
        assert.equal(community.statusCode, 200);

        const reader = await patch(image.id, [{ op: 'replace', path: '/name', value: 'r' }], {
          headers: ALICE_READER,
        });
        assert.equal(reader.statusCode, 403);
        const stranger = await patch(image.id, [{ op: 'replace', path: '/name', value: 's' }], {
          headers: BOB,
        });
        assert.equal(stranger.statusCode, 403);

        const hidden = await newImage({ visibility: 'private' });
        const invisible = await patch(hidden.id, [{ op: 'replace', path: '/name', value: 's' }], {
          headers: BOB,
        });
        assert.equal(invisible.statusCode, 404);

        const byAdmin = await patch(
          image.id,
          [
            { op: 'replace', path: '/owner', value: 'bob' },
            { op: 'replace', path: '/visibility', value: 'public' },
          ],
          { headers: ADMIN },
        );
        assert.equal(byAdmin.statusCode, 200);
        assert.equal(json<Image>(byAdmin).owner, 'bob');
      });

      it('lets formats change while the image is queued', async () => {
        const image = await newImage();
        const response = await patch(image.id, [
          { op: 'replace', path: '/disk_format', value: 'raw' },
          { op: 'replace', path: '/container_format', value: 'bare' },
        ]);
        assert.equal(response.statusCode, 200);
        assert.equal(json<Image>(response).disk_format, 'raw');
      });
    });

    describe('tags', () => {
      /** A PUT or DELETE of a tag of image id, by alice unless headers say otherwise. */
      const tagRequest = (method: 'PUT' | 'DELETE', id: string, tag: string, headers = ALICE) =>
        t.request({ method, url: `/v2/images/${id}/tags/${encodeURIComponent(tag)}`, headers });

      it('adds tags idempotently and removes them', async () => {
        const image = await newImage();
        for (let round = 0; round < 2; round += 1) {
          const put = await tagRequest('PUT', image.id, 'a b/c');
          assert.equal(put.statusCode, 204);
        }
        const shown = json<Image>(
          await t.request({ method: 'GET', url: `/v2/images/${image.id}`, headers: ALICE }),
        );
        assert.deepEqual(shown.tags, ['a b/c']);

        const removed = await tagRequest('DELETE', image.id, 'a b/c');
        assert.equal(removed.statusCode, 204);
        const missing = await tagRequest('DELETE', image.id, 'a b/c');
        assert.equal(missing.statusCode, 404);
      });

      it('enforces the tag quota and length with 413 and 400', async () => {
        const image = await newImage({ tags: ['1', '2'] });
        const over = await tagRequest('PUT', image.id, '3');
        assert.equal(over.statusCode, 413);
        const existing = await tagRequest('PUT', image.id, '2');
        assert.equal(existing.statusCode, 204);

        const other = await newImage();
        const long = await tagRequest('PUT', other.id, 'x'.repeat(256));
        assert.equal(long.statusCode, 400);
      });

      it('applies the modify policy and hides invisible images', async () => {
        const image = await newImage({ visibility: 'private' });
        const reader = await tagRequest('PUT', image.id, 't', ALICE_READER);
        assert.equal(reader.statusCode, 403);
        const stranger = await tagRequest('PUT', image.id, 't', BOB);
        assert.equal(stranger.statusCode, 404);
      });
    });
  });
}
