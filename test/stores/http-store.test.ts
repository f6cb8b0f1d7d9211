/**
 * The read-only http store against the store conformance suite, reading from a local web
 * server (directly, and through a TCP proxy the suite disturbs), plus what is particular to
 * it: redirects, credentials in locations, and servers that ignore Range.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { HttpStore } from '../../src/stores/http/http-store.js';
import { StoreNotFoundError, StoreUnavailableError } from '../../src/stores/store.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { startWebServer, type WebServer } from '../support/web-server.js';
import { describeStoreConformance, readAll } from './conformance.js';

describeStoreConformance('HttpStore', async () => {
  const web = await startWebServer();
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: web.port });
  const store = new HttpStore({ id: 'web' });
  const proxied = new HttpStore({ id: 'web-proxied' });
  await Promise.all([store.init(), proxied.init()]);
  return {
    store,
    proxied: { store: proxied, proxy },
    probesServer: false,
    async seed(imageId, data, into) {
      const path = `/images/${imageId}`;
      web.files.set(path, data);
      return into === proxied ? `${proxy.url}${path}` : web.url(path);
    },
    async close() {
      await Promise.all([store.close(), proxied.close()]);
      await proxy.close();
      await web.close();
    },
  };
});

describe('HttpStore, beyond the contract', () => {
  let web: WebServer;
  let odd: http.Server;
  let oddUrl: string;
  const store = new HttpStore({ id: 'web' });
  const seen: Array<{ url: string; authorization?: string; range?: string }> = [];
  const data = randomBytes(10_000);

  before(async () => {
    web = await startWebServer();
    web.files.set('/data', data);
    // Redirects, a server that ignores Range, and one that stops short of its length.
    odd = http.createServer((request, response) => {
      seen.push({
        url: request.url ?? '',
        authorization: request.headers.authorization,
        range: request.headers.range,
      });
      if (request.url === '/moved') {
        return void response.writeHead(302, { location: web.url('/data') }).end();
      }
      if (request.url === '/loop')
        return void response.writeHead(302, { location: '/loop' }).end();
      if (request.url === '/whole') {
        response.writeHead(200, { 'content-length': String(data.length) });
        return void response.end(data);
      }
      if (request.url === '/short') {
        response.writeHead(200, { 'content-length': String(data.length) });
        response.write(data.subarray(0, 100));
        return void response.destroy();
      }
      response.writeHead(500).end();
    });
    await new Promise<void>((resolve) => odd.listen(0, '127.0.0.1', resolve));
    oddUrl = `http://127.0.0.1:${(odd.address() as AddressInfo).port}`;
  });

  after(async () => {
    await store.close();
    await web.close();
    odd.closeAllConnections();
    await new Promise<void>((resolve) => odd.close(() => resolve()));
  });

  it('follows redirects, but not forever', async () => {
    assert.ok((await readAll(await store.read(`${oddUrl}/moved`))).equals(data));
    assert.equal(await store.sizeOf(`${oddUrl}/moved`), data.length);
    await assert.rejects(store.read(`${oddUrl}/loop`), StoreUnavailableError);
  });

  it('sends credentials of a location to its own origin only', async () => {
    seen.length = 0;
    const location = `http://user:secret@${new URL(oddUrl).host}/moved`;
    assert.ok((await readAll(await store.read(location))).equals(data));
    const expected = `Basic ${Buffer.from('user:secret').toString('base64')}`;
    assert.equal(seen[0]?.authorization, expected);
  });

  it('cuts a range out of a server that sends the whole data', async () => {
    const part = await readAll(await store.read(`${oddUrl}/whole`, { start: 100, end: 199 }));
    assert.ok(part.equals(data.subarray(100, 200)));
    assert.equal(seen.at(-1)?.range, 'bytes=100-199');
  });

  it('fails a body that ends before its length, and names no password', async () => {
    const location = `http://user:secret@${new URL(oddUrl).host}/short`;
    // The cut may come before or after the answer's headers reach the store.
    await assert.rejects(
      async () => readAll(await store.read(location)),
      (error: Error) => {
        assert.ok(error instanceof StoreUnavailableError);
        assert.doesNotMatch(error.message, /secret/);
        return true;
      },
    );
  });

  it('reports a server error as unavailable and a missing file as not found', async () => {
    await assert.rejects(store.read(`${oddUrl}/error`), StoreUnavailableError);
    await assert.rejects(store.read(web.url('/missing')), StoreNotFoundError);
  });
});
