import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

const [sqlite] = await testDatabases();
const dir = mkdtempSync(join(tmpdir(), 'glimpse-rules-'));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const PATCH = 'application/openstack-images-v2.1-json-patch';
const MEMBER = asProject('p1');
const ADMIN = asProject('p1', 'admin');
const BILLING = asProject('p1', 'member,billing');

const ROLES_FILE = `
[^x_billing_.*]
create = admin,billing
read = admin,billing
update = admin,billing
delete = admin

[^x_frozen$]
create = @
read = @
update = !
delete = !

[.*]
create = @
read = @
update = @
delete = @
`;

describe('property protections (roles format)', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(sqlite!, { property_protection_file: file('roles.conf', ROLES_FILE) });
  });
  after(() => t.close());

  const create = (headers: Record<string, string>, body: Record<string, unknown>) =>
    t.request({ method: 'POST', url: '/v2/images', headers, payload: JSON.stringify(body) });

  const patch = (headers: Record<string, string>, id: string, operations: unknown[]) =>
    t.request({
      method: 'PATCH',
      url: `/v2/images/${id}`,
      headers: { ...headers, 'content-type': PATCH },
      payload: JSON.stringify(operations),
    });

  it('refuses creating a protected property without the role', async () => {
    const refused = await create(MEMBER, { x_billing_code: 'A1' });
    assert.equal(refused.statusCode, 403);
    assert.match(refused.body, /Attribute 'x_billing_code' is reserved\./);
    assert.equal((await create(BILLING, { x_billing_code: 'A1' })).statusCode, 201);
  });

  it('hides unreadable properties and keeps them through updates by others', async () => {
    const made = json<{ id: string }>(
      await create(ADMIN, { x_billing_code: 'A1', os_distro: 'x' }),
    );
    const seen = json<Record<string, unknown>>(
      await t.request({ method: 'GET', url: `/v2/images/${made.id}`, headers: MEMBER }),
    );
    assert.equal('x_billing_code' in seen, false);
    assert.equal(seen.os_distro, 'x');

    const updated = await patch(MEMBER, made.id, [
      { op: 'replace', path: '/os_distro', value: 'y' },
    ]);
    assert.equal(updated.statusCode, 200);
    const asAdmin = json<Record<string, unknown>>(
      await t.request({ method: 'GET', url: `/v2/images/${made.id}`, headers: ADMIN }),
    );
    assert.equal(asAdmin.x_billing_code, 'A1');
    assert.equal(asAdmin.os_distro, 'y');

    const hidden = await patch(MEMBER, made.id, [
      { op: 'replace', path: '/x_billing_code', value: 'B2' },
    ]);
    assert.equal(hidden.statusCode, 409);
  });

  it('enforces update and delete rules', async () => {
    const made = json<{ id: string }>(await create(MEMBER, { x_frozen: 'ice' }));
    const update = await patch(MEMBER, made.id, [
      { op: 'replace', path: '/x_frozen', value: 'w' },
    ]);
    assert.equal(update.statusCode, 403);
    const remove = await patch(MEMBER, made.id, [{ op: 'remove', path: '/x_frozen' }]);
    assert.equal(remove.statusCode, 403);
    const adminRemove = await patch(ADMIN, made.id, [{ op: 'remove', path: '/x_frozen' }]);
    assert.equal(adminRemove.statusCode, 403);
  });
});

describe('policy file overrides', () => {
  let t: TestApp;
  before(async () => {
    const policy = file(
      'policy.yaml',
      [
        '"image_creator": "role:creator"',
        '"add_image": "rule:image_creator and project_id:%(project_id)s"',
        '"download_image": "!"',
      ].join('\n'),
    );
    t = await startTestApp(sqlite!, { policy_file: policy });
  });
  after(() => t.close());

  it('applies overridden rules by name, including rules the file defines', async () => {
    const member = await t.request({
      method: 'POST',
      url: '/v2/images',
      headers: MEMBER,
      payload: '{}',
    });
    assert.equal(member.statusCode, 403);
    const creator = await t.request({
      method: 'POST',
      url: '/v2/images',
      headers: asProject('p1', 'creator'),
      payload: '{}',
    });
    assert.equal(creator.statusCode, 201);
  });

  it('refuses to start on a malformed policy file, naming the rule', async () => {
    const broken = file('broken.yaml', '"get_image": "role:admin or or role:member"\n');
    await assert.rejects(startTestApp(sqlite!, { policy_file: broken }), /get_image/);
    const dangling = file('dangling.yaml', '"get_image": "rule:nowhere"\n');
    await assert.rejects(startTestApp(sqlite!, { policy_file: dangling }), /nowhere/);
  });

  it('refuses to start on a malformed protections file', async () => {
    const missing = file('missing-op.conf', '[.*]\ncreate = @\nread = @\nupdate = @\n');
    await assert.rejects(
      startTestApp(sqlite!, { property_protection_file: missing }),
      /has no 'delete' entry/,
    );
  });
});
