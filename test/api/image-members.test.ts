import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

type Member = { member_id: string; image_id: string; status: string; schema: string };

const OWNER = asProject('owner');
const OWNER_READER = asProject('owner', 'reader');
const BOB = asProject('bob');
const BOB_READER = asProject('bob', 'reader');
const CAROL = asProject('carol');
const ADMIN = asProject('ops', 'admin');

for (const database of await testDatabases()) {
  describe(`image members on ${database.name}`, { skip: database.skip ?? false }, () => {
    let t: TestApp;
    before(async () => {
      t = await startTestApp(database, { image_member_quota: 2 });
    });
    after(() => t?.close());

    const call = (
      method: 'GET' | 'POST' | 'PUT' | 'DELETE',
      url: string,
      headers: Record<string, string>,
      body?: unknown,
    ) =>
      t.request({
        method,
        url,
        headers,
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });

    const sharedImage = async (visibility = 'shared') => {
      const response = await call('POST', '/v2/images', OWNER, { name: 's', visibility });
      assert.equal(response.statusCode, 201);
      return json<{ id: string }>(response).id;
    };

    const members = (id: string) => `/v2/images/${id}/members`;

    it('adds a pending member with 200 and lists it for the owner', async () => {
      const id = await sharedImage();
      const added = await call('POST', members(id), OWNER, { member: 'bob' });
      assert.equal(added.statusCode, 200);
      const member = json<Member & { created_at: string }>(added);
      assert.equal(member.member_id, 'bob');
      assert.equal(member.image_id, id);
      assert.equal(member.status, 'pending');
      assert.equal(member.schema, '/v2/schemas/member');
      assert.match(member.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

      const listed = json<{ members: Member[]; schema: string }>(
        await call('GET', members(id), OWNER),
      );
      assert.deepEqual(
        listed.members.map((m) => m.member_id),
        ['bob'],
      );
      assert.equal(listed.schema, '/v2/schemas/members');
    });

    it('lets a member see the image, accept it, and find it in its default list', async () => {
      const id = await sharedImage();
      await call('POST', members(id), OWNER, { member: 'bob' });

      assert.equal((await call('GET', `/v2/images/${id}`, BOB)).statusCode, 200);
      assert.equal((await call('GET', `/v2/images/${id}`, CAROL)).statusCode, 404);
      const before = json<{ images: Array<{ id: string }> }>(await call('GET', '/v2/images', BOB));
      assert.equal(
        before.images.some((image) => image.id === id),
        false,
      );

      const accepted = await call('PUT', `${members(id)}/bob`, BOB, { status: 'accepted' });
      assert.equal(accepted.statusCode, 200);
      assert.equal(json<Member>(accepted).status, 'accepted');
      const after = json<{ images: Array<{ id: string }> }>(await call('GET', '/v2/images', BOB));
      assert.equal(
        after.images.some((image) => image.id === id),
        true,
      );
    });

    it('shows a member only its own row, and hides other rows behind 404', async () => {
      const id = await sharedImage();
      await call('POST', members(id), OWNER, { member: 'bob' });
      await call('POST', members(id), OWNER, { member: 'carol' });

      const seenByBob = json<{ members: Member[] }>(await call('GET', members(id), BOB));
      assert.deepEqual(
        seenByBob.members.map((m) => m.member_id),
        ['bob'],
      );
      assert.equal((await call('GET', `${members(id)}/carol`, BOB)).statusCode, 404);
      assert.equal((await call('GET', `${members(id)}/bob`, BOB)).statusCode, 200);
      assert.equal((await call('GET', `${members(id)}/carol`, OWNER)).statusCode, 200);
      assert.equal((await call('GET', `${members(id)}/nobody`, OWNER)).statusCode, 404);
      assert.equal((await call('GET', members(id), ADMIN)).statusCode, 200);
    });

    it('refuses the owner setting a member status, even an invalid one, with 403', async () => {
      const id = await sharedImage();
      await call('POST', members(id), OWNER, { member: 'bob' });
      for (const status of ['accepted', 'bogus']) {
        const response = await call('PUT', `${members(id)}/bob`, OWNER, { status });
        assert.equal(response.statusCode, 403, status);
      }
      const bad = await call('PUT', `${members(id)}/bob`, BOB, { status: 'bogus' });
      assert.equal(bad.statusCode, 400);
      const missing = await call('PUT', `${members(id)}/bob`, BOB, {});
      assert.equal(missing.statusCode, 400);
      assert.match(missing.body, /Status not specified/);
      const reader = await call('PUT', `${members(id)}/bob`, BOB_READER, { status: 'accepted' });
      assert.equal(reader.statusCode, 403);
    });

    it('lets only the owner remove members, after which access is gone', async () => {
      const id = await sharedImage();
      await call('POST', members(id), OWNER, { member: 'bob' });
      assert.equal((await call('DELETE', `${members(id)}/bob`, BOB)).statusCode, 403);

      const removed = await call('DELETE', `${members(id)}/bob`, OWNER);
      assert.equal(removed.statusCode, 204);
      assert.equal((await call('GET', `/v2/images/${id}`, BOB)).statusCode, 404);
      assert.equal((await call('DELETE', `${members(id)}/bob`, OWNER)).statusCode, 404);

      const readded = await call('POST', members(id), OWNER, { member: 'bob' });
      assert.equal(readded.statusCode, 200);
      assert.equal(json<Member>(readded).status, 'pending');
    });

    it('answers duplicates with 409 and the member quota with 413', async () => {
      const id = await sharedImage();
      assert.equal((await call('POST', members(id), OWNER, { member: 'bob' })).statusCode, 200);
      assert.equal((await call('POST', members(id), OWNER, { member: 'bob' })).statusCode, 409);
      assert.equal((await call('POST', members(id), OWNER, { member: 'carol' })).statusCode, 200);
      assert.equal((await call('POST', members(id), OWNER, { member: 'dave' })).statusCode, 413);
    });

    it('keeps members to shared images', async () => {
      const id = await sharedImage('private');
      const add = await call('POST', members(id), OWNER, { member: 'bob' });
      assert.equal(add.statusCode, 403);
      assert.match(add.body, /Not allowed to create members for image/);
      const list = await call('GET', members(id), OWNER);
      assert.equal(list.statusCode, 403);
      assert.match(list.body, /Only shared images have members\./);
      assert.equal((await call('GET', `${members(id)}/bob`, OWNER)).statusCode, 404);
    });

    it('stops granting access when the image leaves shared visibility', async () => {
      const id = await sharedImage();
      await call('POST', members(id), OWNER, { member: 'bob' });
      const patched = await t.request({
        method: 'PATCH',
        url: `/v2/images/${id}`,
        headers: { ...OWNER, 'content-type': 'application/openstack-images-v2.1-json-patch' },
        payload: JSON.stringify([{ op: 'replace', path: '/visibility', value: 'private' }]),
      });
      assert.equal(patched.statusCode, 200);
      assert.equal((await call('GET', `/v2/images/${id}`, BOB)).statusCode, 404);
    });

    it('validates the member body and applies the add policy', async () => {
      const id = await sharedImage();
      const cases: Array<[unknown, RegExp]> = [
        [{}, /Member to be added not specified/],
        [{ member: '' }, /Member can't be empty|Member can&#x27;t be empty/],
        [[], /Expected a member/],
        [{ member: 5 }, /Member must be a string/],
        [{ member: 'x'.repeat(256) }, /Member must be a string/],
      ];
      for (const [body, message] of cases) {
        const response = await call('POST', members(id), OWNER, body);
        assert.equal(response.statusCode, 400, JSON.stringify(body));
        assert.match(response.body, message);
      }
      assert.equal(
        (await call('POST', members(id), OWNER_READER, { member: 'x' })).statusCode,
        403,
      );
      assert.equal((await call('POST', members(id), BOB, { member: 'x' })).statusCode, 404);
    });
  });
}
