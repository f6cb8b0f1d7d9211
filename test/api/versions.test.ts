import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { startTestApp, json, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';

const [sqlite] = await testDatabases();

describe('version negotiation, request ids and error bodies', () => {
  let t: TestApp;
  before(async () => {
    t = await startTestApp(sqlite!);
  });
  after(() => t.close());

  it('answers the root with 300 and the versions document', async () => {
    const response = await t.request({ method: 'GET', url: '/' });
    assert.equal(response.statusCode, 300);
    const { versions } = json<{ versions: Array<{ id: string; status: string }> }>(response);
    assert.equal(versions.find((v) => v.status === 'CURRENT')?.id, 'v2.17');
    assert.deepEqual(
      versions.map((v) => v.id),
      ['v2.15', 'v2.9', 'v2.17', 'v2.7', 'v2.6', 'v2.5', 'v2.4', 'v2.3', 'v2.2', 'v2.1', 'v2.0'],
    );
    assert.ok(versions.some((v) => v.id === 'v2.0' && v.status === 'SUPPORTED'));
  });

  it('answers /versions and anything below it with 200', async () => {
    for (const url of ['/versions', '/versions/foo']) {
      const response = await t.request({ method: 'GET', url });
      assert.equal(response.statusCode, 200);
      const doc = json<{ versions: Array<{ links: Array<{ href: string }> }> }>(response);
      assert.match(doc.versions[0]!.links[0]!.href, /^http:\/\/localhost(:\d+)?\/v2\/$/);
    }
  });

  it('maps every accepted version prefix to the v2 routes', async () => {
    for (const prefix of ['v2', 'v2.0', 'v2.3', 'v2.5', 'v2.7', 'v2.9', 'v2.17']) {
      const response = await t.request({ method: 'GET', url: `/${prefix}/images` });
      assert.equal(response.statusCode, 200, prefix);
    }
  });

  it('answers unknown versions with 300', async () => {
    for (const url of ['/v1/images', '/v3/images', '/foo', '/v2.99/images']) {
      assert.equal((await t.request({ method: 'GET', url })).statusCode, 300, url);
    }
  });

  it('selects the version from the Accept media type without a prefix in the path', async () => {
    const accept = 'application/vnd.openstack.images-v2';
    const ok = await t.request({ method: 'GET', url: '/images', headers: { accept } });
    assert.equal(ok.statusCode, 200);
    const doubled = await t.request({ method: 'GET', url: '/v2/images', headers: { accept } });
    assert.equal(doubled.statusCode, 404);
    const unknown = await t.request({
      method: 'GET',
      url: '/images',
      headers: { accept: 'application/vnd.openstack.images-v9' },
    });
    assert.equal(unknown.statusCode, 300);
  });

  it('mints a request id, or adopts the client one with the req- prefix', async () => {
    const minted = await t.request({ method: 'GET', url: '/v2/images' });
    assert.match(String(minted.headers['x-openstack-request-id']), /^req-[0-9a-f-]{36}$/);

    const adopted = await t.request({
      method: 'GET',
      url: '/v2/images/missing',
      headers: { 'x-openstack-request-id': 'abc-123' },
    });
    assert.equal(adopted.headers['x-openstack-request-id'], 'req-abc-123');
    assert.equal(adopted.statusCode, 404);
  });

  it('refuses a request id longer than max_request_id_length with 431', async () => {
    const response = await t.request({
      method: 'GET',
      url: '/v2/images',
      headers: { 'x-openstack-request-id': 'x'.repeat(65) },
    });
    assert.equal(response.statusCode, 431);
  });

  it('renders errors as plain text, HTML or JSON following the Accept header', async () => {
    const url = '/v2/images/abc';
    const plain = await t.request({ method: 'GET', url });
    assert.equal(plain.headers['content-type'], 'text/plain; charset=UTF-8');
    assert.equal(plain.body, '404 Not Found\n\nNo image found with ID abc\n\n   ');

    const html = await t.request({ method: 'GET', url, headers: { accept: '*/*' } });
    assert.equal(html.headers['content-type'], 'text/html; charset=UTF-8');
    assert.match(html.body, /<title>404 Not Found<\/title>/);
    assert.match(html.body, /No image found with ID abc<br \/><br \/>/);

    const data = await t.request({ method: 'GET', url, headers: { accept: 'application/json' } });
    assert.match(String(data.headers['content-type']), /^application\/json/);
    assert.deepEqual(json(data), {
      message: 'No image found with ID abc<br /><br />\n\n\n',
      code: '404 Not Found',
      title: 'Not Found',
    });
  });

  it('answers a known path with an unsupported method with 405 and Allow', async () => {
    const head = await t.request({ method: 'HEAD', url: '/v2/images' });
    assert.equal(head.statusCode, 405);
    assert.equal(head.headers.allow, 'POST, GET');

    const put = await t.request({ method: 'PUT', url: '/v2/schemas/image' });
    assert.equal(put.statusCode, 405);
    assert.equal(put.headers.allow, 'GET');

    const image = await t.request({ method: 'POST', url: '/v2/images/abc' });
    assert.equal(image.headers.allow, 'GET, PATCH, DELETE');
  });

  it('answers an unknown path with 404', async () => {
    const response = await t.request({ method: 'GET', url: '/v2/nothing-here' });
    assert.equal(response.statusCode, 404);
    assert.match(response.body, /The resource could not be found\./);
  });

  it('refuses a body on reads', async () => {
    const response = await t.request({
      method: 'GET',
      url: '/v2/images',
      headers: { 'content-type': 'application/json' },
      payload: '{}',
    });
    assert.equal(response.statusCode, 400);
    assert.match(response.body, /A body is not expected with this request\./);
  });

  it('serves a health check outside the versioned API', async () => {
    const response = await t.request({ method: 'GET', url: '/healthcheck' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, 'OK');
  });
});
