/**
 * The Swift store against the store conformance suite, on the real Swift that
 * scripts/swift.sh runs: with Swift's own auth (tempauth), and with Keystone's, where the
 * storage URL comes from the catalog of the Keystone of scripts/keystone.sh. Each run writes
 * to containers of its own and removes them.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { SwiftClient } from '../../src/stores/swift/swift-client.js';
import { SwiftStore } from '../../src/stores/swift/swift-store.js';
import {
  parseSwiftSettings,
  type SwiftStoreOptions,
} from '../../src/stores/swift/swift-config.js';
import { KEYSTONE_URL, keystoneProblem, serviceCredentials } from '../support/keystone.js';
import {
  SWIFT_AUTH_URL,
  SWIFT_KEY,
  SWIFT_USER,
  removeContainers,
  swiftAvailability,
  swiftLogin,
  swiftObjectNames,
  type SwiftLogin,
} from '../support/swift.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { describeStoreConformance, readAll } from './conformance.js';

const KIB = 1024;
const SEGMENT_SIZE = 256 * KIB;

const { skip } = await swiftAvailability();

describeStoreConformance(
  'SwiftStore',
  async () => {
    const container = `glimpse-conformance-${randomBytes(4).toString('hex')}`;
    const options = (id: string, authUrl = SWIFT_AUTH_URL): SwiftStoreOptions => ({
      id,
      authUrl,
      authVersion: '1',
      user: SWIFT_USER,
      key: SWIFT_KEY,
      container,
      largeObjectSize: 5 * 1024 * 1024 * 1024,
      largeObjectChunkSize: 200 * 1024 * 1024,
      createContainerOnPut: true,
      requestTimeoutMs: 10_000,
      bodyTimeoutMs: 10_000,
    });

    const store = new SwiftStore(options('swift-test'));
    const segmented = new SwiftStore({
      ...options('swift-segmented'),
      largeObjectSize: SEGMENT_SIZE,
      largeObjectChunkSize: SEGMENT_SIZE,
    });
    // tempauth builds the storage URL from the Host it was asked at, so a store that logs in
    // through the proxy also reads and writes through it.
    const auth = new URL(SWIFT_AUTH_URL);
    const proxy = await startTcpProxy({ host: auth.hostname, port: Number(auth.port || 80) });
    const proxied = new SwiftStore(options('swift-proxied', `${proxy.url}${auth.pathname}`));
    const unreachable = new SwiftStore(options('swift-down', 'http://127.0.0.1:1/auth/v1.0'));
    await Promise.all([store.init(), segmented.init(), proxied.init()]);

    return {
      store,
      segmented: { store: segmented, segmentSize: SEGMENT_SIZE },
      proxied: { store: proxied, proxy },
      unreachable,
      // Segments of an image's writes are <container>-segments/<image id>/<nonce>/<n>.
      leftovers: (imageId) => swiftObjectNames(`${container}-segments`, `${imageId}/`),
      async close() {
        await Promise.all([store, segmented, proxied, unreachable].map((s) => s.close()));
        await proxy.close();
        await removeContainers([container, `${container}-segments`]);
      },
    };
  },
  { skip },
);

describe('SwiftStore segmenting', { skip: skip ?? false }, () => {
  const container = `glimpse-segmenting-${randomBytes(4).toString('hex')}`;
  const LARGE = 256 * KIB;
  const CHUNK = 64 * KIB;
  const store = new SwiftStore({
    id: 'swift-segmenting',
    authUrl: SWIFT_AUTH_URL,
    authVersion: '1',
    user: SWIFT_USER,
    key: SWIFT_KEY,
    container,
    largeObjectSize: LARGE,
    largeObjectChunkSize: CHUNK,
    createContainerOnPut: true,
  });

  before(() => store.init());
  after(async () => {
    await store.close();
    await removeContainers([container, `${container}-segments`]);
  });

  /** Writes `size` bytes in 10 KiB chunks; returns the object and segment names it left. */
  async function stored(size: number, declared: number | null) {
    const id = randomUUID();
    const data = randomBytes(size);
    const writer = await store.createWriter(id, declared);
    for (let offset = 0; offset < size; offset += 10 * KIB) {
      await writer.write(data.subarray(offset, offset + 10 * KIB));
    }
    const location = await writer.commit();
    assert.ok((await readAll(await store.read(location))).equals(data));
    const login = await swiftLogin();
    const head = await fetch(`${login.storageUrl}/${container}/${id}`, {
      method: 'HEAD',
      headers: { 'x-auth-token': login.token },
    });
    return {
      objects: await swiftObjectNames(container, id, login),
      segments: await swiftObjectNames(`${container}-segments`, `${id}/`, login),
      manifest: head.headers.get('x-static-large-object') === 'True',
    };
  }

  it('writes data of a known size below the large object size as one object', async () => {
    const { objects, segments, manifest } = await stored(LARGE - 1, LARGE - 1);
    assert.equal(objects.length, 1);
    assert.deepEqual(segments, []);
    assert.equal(manifest, false);
  });

  it('writes data of a known size from the large object size on in chunks', async () => {
    const { segments, manifest } = await stored(LARGE, LARGE);
    assert.equal(segments.length, LARGE / CHUNK);
    assert.equal(manifest, true);
  });

  it('writes data of an unknown size in chunks, however small', async () => {
    const { segments, manifest } = await stored(3 * CHUNK + 1, null);
    assert.equal(segments.length, 4);
    assert.equal(manifest, true);
  });
});

const keystoneSkip = skip ?? (await keystoneProblem());

describeStoreConformance(
  'SwiftStore, Keystone auth',
  async () => {
    const container = `glimpse-keystone-${randomBytes(4).toString('hex')}`;
    const service = serviceCredentials();
    // As an operator would configure it, from upstream-named settings.
    const store = new SwiftStore(
      parseSwiftSettings('swift-keystone', {
        swift_store_auth_address: KEYSTONE_URL,
        swift_store_auth_version: '3',
        swift_store_user: service.username,
        swift_store_key: service.password,
        swift_store_project_name: service.projectName,
        swift_store_container: container,
        swift_store_region: 'RegionOne',
      }),
    );
    await store.init();
    return {
      store,
      async close() {
        await store.close();
        await removeContainers([container, `${container}-segments`], await keystoneLogin());
      },
    };
  },
  { skip: keystoneSkip },
);

describe('removeContainers of the test support', { skip: keystoneSkip ?? false }, () => {
  it('empties and removes containers of a Keystone account, not of tempauth', async () => {
    const login = await keystoneLogin();
    const container = `glimpse-remove-${randomBytes(4).toString('hex')}`;
    const send = async (method: string, path: string) => {
      const response = await fetch(`${login.storageUrl}/${container}${path}`, {
        method,
        headers: { 'x-auth-token': login.token },
        body: method === 'PUT' && path !== '' ? 'data' : undefined,
      });
      await response.arrayBuffer();
      return response.status;
    };
    assert.equal(await send('PUT', ''), 201);
    assert.equal(await send('PUT', '/a/b'), 201);

    await removeContainers([container], login);
    assert.equal(await send('HEAD', ''), 404);
  });
});

/** A token and storage URL of the service's Keystone project, for removing what was left. */
async function keystoneLogin(): Promise<SwiftLogin> {
  const service = serviceCredentials();
  const client = new SwiftClient(
    parseSwiftSettings('cleanup', {
      swift_store_auth_address: KEYSTONE_URL,
      swift_store_user: service.username,
      swift_store_key: service.password,
      swift_store_project_name: service.projectName,
    }),
  );
  try {
    const session = await client.session();
    return { token: session.token, storageUrl: session.storageUrl };
  } finally {
    await client.close();
  }
}
