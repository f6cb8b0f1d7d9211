/**
 * Two Glimpse processes sharing one PostgreSQL database and one Swift store, as stateless API
 * processes behind a load balancer would: what one writes, the other reads and deletes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { testDatabases, type TestDatabase } from '../support/databases.js';
import { startServer, stopServer, type ServerProcess } from '../support/server-process.js';
import {
  SWIFT_AUTH_URL,
  SWIFT_KEY,
  SWIFT_USER,
  removeContainers,
  swiftAvailability,
  swiftObjectNames,
} from '../support/swift.js';

const MIB = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 60_000;
const OCTETS = { 'content-type': 'application/octet-stream' };

const { skip: swiftSkip } = await swiftAvailability();
const postgres = (await testDatabases()).find((database) => database.name === 'postgres');

async function call(
  server: ServerProcess,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer | string } = {},
) {
  const response = await fetch(new URL(path, server.url), {
    method,
    headers: options.headers ?? {},
    body: options.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
}

describe(
  'two processes on one PostgreSQL and one Swift',
  {
    skip: swiftSkip ?? postgres?.skip ?? (postgres ? false : 'no PostgreSQL'),
  },
  () => {
    const container = `glimpse-shared-${randomBytes(4).toString('hex')}`;
    let db: Awaited<ReturnType<TestDatabase['create']>>;
    let first: ServerProcess;
    let second: ServerProcess;

    before(async () => {
      db = await (postgres as TestDatabase).create();
      const env = {
        GLIMPSE_DATABASE_URL: db.url,
        GLIMPSE_ENABLED_BACKENDS: 'swift:swift',
        GLIMPSE_DEFAULT_BACKEND: 'swift',
        GLIMPSE_STORE_OPTIONS: JSON.stringify({
          swift: {
            swift_store_auth_address: SWIFT_AUTH_URL,
            swift_store_auth_version: '1',
            swift_store_user: SWIFT_USER,
            swift_store_key: SWIFT_KEY,
            swift_store_container: container,
            swift_store_large_object_size: 1,
            swift_store_large_object_chunk_size: 1,
          },
        }),
      };
      // Separate data directories: nothing but PostgreSQL and Swift is shared.
      first = await startServer({ env });
      second = await startServer({ env });
    });

    after(async () => {
      await Promise.all([first, second].filter(Boolean).map((server) => stopServer(server)));
      await db?.drop();
      await removeContainers([container, `${container}-segments`]);
    });

    it('uploads through one process, then downloads and deletes through the other', async () => {
      const created = await call(first, 'POST', '/v2/images', {
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'shared', disk_format: 'raw', container_format: 'bare' }),
      });
      assert.equal(created.status, 201, created.body.toString());
      const id = (JSON.parse(created.body.toString()) as { id: string }).id;
      const data = randomBytes(5 * MIB + 3);

      const uploaded = await call(first, 'PUT', `/v2/images/${id}/file`, {
        headers: OCTETS,
        body: data,
      });
      assert.equal(uploaded.status, 204, uploaded.body.toString());

      const shown = await call(second, 'GET', `/v2/images/${id}`);
      const image = JSON.parse(shown.body.toString()) as Record<string, unknown>;
      assert.equal(image.status, 'active');
      assert.equal(image.stores, 'swift');
      assert.equal(image.checksum, createHash('md5').update(data).digest('hex'));

      const downloaded = await call(second, 'GET', `/v2/images/${id}/file`);
      assert.equal(downloaded.status, 200);
      assert.ok(downloaded.body.equals(data), 'the other process served other bytes');
      const ranged = await call(second, 'GET', `/v2/images/${id}/file`, {
        headers: { range: `bytes=${MIB - 1}-${MIB}` },
      });
      assert.equal(ranged.status, 206);
      assert.ok(ranged.body.equals(data.subarray(MIB - 1, MIB + 1)));
      assert.notDeepEqual(await swiftObjectNames(container, id), []);

      const deleted = await call(second, 'DELETE', `/v2/images/${id}`);
      assert.equal(deleted.status, 204);
      assert.deepEqual(await swiftObjectNames(container, id), []);
      assert.deepEqual(await swiftObjectNames(`${container}-segments`, `${id}/`), []);
      assert.equal((await call(first, 'GET', `/v2/images/${id}`)).status, 404);
    });
  },
);
