import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

const [sqlite] = await testDatabases();

type Schema = {
  name: string;
  properties: Record<string, Record<string, unknown>>;
  additionalProperties?: unknown;
  links?: Array<{ rel: string; href: string }>;
};

describe('schemas', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(sqlite!, { disk_formats: ['raw', 'qcow2'] });
  });
  after(() => t.close());

  const get = async (name: string) => {
    const response = await t.request({ method: 'GET', url: `/v2/schemas/${name}` });
    assert.equal(response.statusCode, 200);
    return json<Schema>(response);
  };

  it('describes the image with base properties, custom ones marked non-base', async () => {
    const schema = await get('image');
    assert.equal(schema.name, 'image');
    assert.deepEqual(schema.additionalProperties, { type: 'string' });
    assert.deepEqual(schema.properties.disk_format?.enum, [null, 'raw', 'qcow2']);
    assert.equal(schema.properties.name?.maxLength, 255);
    assert.equal(schema.properties.status?.readOnly, true);
    assert.equal('is_base' in (schema.properties.visibility ?? {}), false);
    assert.equal(schema.properties.os_distro?.is_base, false);
    assert.equal(schema.properties.kernel_id?.is_base, false);
    assert.deepEqual(
      schema.links?.map((link) => link.rel),
      ['self', 'enclosure', 'describedby'],
    );
    for (const key of ['id', 'tags', 'min_ram', 'locations', 'os_hidden', 'os_hash_value']) {
      assert.ok(key in schema.properties, key);
    }
  });

  it('describes image, member and task collections', async () => {
    const images = await get('images');
    assert.equal(images.properties.images?.type, 'array');
    assert.ok('next' in images.properties);

    const members = await get('members');
    assert.deepEqual(members.links, [{ rel: 'describedby', href: '{schema}' }]);
    const member = await get('member');
    assert.deepEqual(member.properties.status?.enum, ['pending', 'accepted', 'rejected']);

    const tasks = await get('tasks');
    const item = (tasks.properties.tasks?.items ?? {}) as Schema;
    assert.equal('input' in item.properties, false);
    const task = await get('task');
    assert.ok('input' in task.properties && 'result' in task.properties);
  });

  it('serves schemas only with GET', async () => {
    const response = await t.request({ method: 'POST', url: '/v2/schemas/image', payload: '{}' });
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, 'GET');
    assert.equal((await t.request({ method: 'GET', url: '/v2/schemas/nope' })).statusCode, 404);
  });
});
