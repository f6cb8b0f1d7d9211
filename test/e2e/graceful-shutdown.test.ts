/**
 * A server asked to stop (SIGTERM) finishes the requests it is running before it closes the
 * database, even those whose client has hung up: the HTTP server only waits for connections,
 * so without that a change the client already sent could be lost halfway, and the handler
 * would fail on a closed database. PostgreSQL lets the test hold a request inside the
 * database: a table lock makes its first query wait.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { describe, it } from 'node:test';

import pg from 'pg';

import { testDatabases } from '../support/databases.js';
import { startServer, stopServer } from '../support/server-process.js';

const postgres = (await testDatabases()).find((database) => database.name === 'postgres');
const TEST_TIMEOUT_MS = 60_000;
/** How long the request is held in the database after SIGTERM. */
const HOLD_AFTER_SIGTERM_MS = 1_000;

describe('graceful shutdown', { skip: postgres?.skip ?? false }, () => {
  it(
    'finishes a change whose client hung up before closing the database',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      if (!postgres) throw new Error('no PostgreSQL test database');
      const database = await postgres.create();
      t.after(() => database.drop());
      const server = await startServer({ env: { GLIMPSE_DATABASE_URL: database.url } });
      t.after(() => stopServer(server));

      const created = await fetch(`${server.url}/v2/images`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'before' }),
      });
      const { id } = (await created.json()) as { id: string };

      const locker = new pg.Client({ connectionString: database.url });
      // Dropping the database at the end ends this session from the server side.
      locker.on('error', () => undefined);
      await locker.connect();
      t.after(() => locker.end());
      await locker.query('begin');
      await locker.query('lock table images in access exclusive mode');

      // The PATCH reaches the handler and waits on the lock; then its client goes away.
      const patch = httpRequest(`${server.url}/v2/images/${id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/openstack-images-v2.1-json-patch' },
      });
      patch.on('error', () => undefined);
      patch.end(JSON.stringify([{ op: 'replace', path: '/name', value: 'after' }]));
      await waitForLockWaiter(locker);
      patch.destroy();

      const exited = once(server.child, 'exit');
      server.child.kill('SIGTERM');
      await new Promise((resolve) => setTimeout(resolve, HOLD_AFTER_SIGTERM_MS));
      assert.equal(server.child.exitCode, null, 'the server waits for the running request');
      await locker.query('commit');

      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, server.output());
      assert.doesNotMatch(server.output(), /unexpected error/);
      const { rows } = await locker.query('select name from images where id = $1', [id]);
      assert.equal(rows[0]?.name, 'after', 'the change the client sent was saved');
    },
  );
});

/** Waits until some other session is waiting for a lock the locker holds. */
async function waitForLockWaiter(locker: pg.Client): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const { rows } = await locker.query(
      `select count(*)::int as waiting from pg_locks where not granted`,
    );
    if ((rows[0] as { waiting: number }).waiting > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the request never reached the database');
}
