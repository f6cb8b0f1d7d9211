/**
 * Several API processes on one port (`workers`): every worker serves, concurrent changes through
 * them all land, a worker that dies is replaced and its interrupted upload undone, and SIGTERM
 * stops them all. Run on each database, since both must take writes from several processes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { Agent, request } from 'undici';

import { testDatabases } from '../support/databases.js';
import { startServer, stopServer, type ServerProcess } from '../support/server-process.js';

const WORKERS = 2;
const TEST_TIMEOUT_MS = 90_000;
const JSON_HEADERS = { 'content-type': 'application/json' };

interface Image {
  id: string;
  status: string;
  size: number | null;
  checksum: string | null;
  tags: string[];
}

/** Pids of the processes whose parent is `pid`. */
async function childPids(pid: number): Promise<number[]> {
  const children: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) === pid) children.push(Number(entry));
  }
  return children;
}

/** User plus system CPU time of a process, in clock ticks. */
async function cpuTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Polls `probe` until it gives a value; a probe that throws (no worker listening yet) retries. */
async function eventually<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await probe().catch(() => null);
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within 20 s`);
    await sleep(100);
  }
}

class Client {
  // Many connections, so that the primary hands them to every worker.
  readonly #agent = new Agent({ connections: 64, pipelining: 1 });

  constructor(private readonly server: ServerProcess) {}

  async call(method: string, path: string, body?: string | Buffer, headers = JSON_HEADERS) {
    const response = await request(`${this.server.url}${path}`, {
      method: method as 'GET',
      headers,
      body,
      dispatcher: this.#agent,
    });
    const text = await response.body.text();
    return { status: response.statusCode, text };
  }

  async create(body: Record<string, unknown> = {}): Promise<Image> {
    const response = await this.call('POST', '/v2/images', JSON.stringify(body));
    assert.equal(response.status, 201, response.text);
    return JSON.parse(response.text) as Image;
  }

  async show(id: string): Promise<Image> {
    const response = await this.call('GET', `/v2/images/${id}`);
    assert.equal(response.status, 200, response.text);
    return JSON.parse(response.text) as Image;
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

for (const database of await testDatabases()) {
  describe(`${WORKERS} API workers on ${database.name}`, { skip: database.skip ?? false }, () => {
    const start = async (t: { after(fn: () => Promise<void>): void }) => {
      const db = await database.create();
      t.after(() => db.drop());
      const server = await startServer({
        env: {
          GLIMPSE_WORKERS: String(WORKERS),
          GLIMPSE_DATABASE_URL: db.url,
          GLIMPSE_WORKER_HEARTBEAT_SECONDS: '1',
        },
      });
      t.after(() => stopServer(server));
      const client = new Client(server);
      t.after(() => client.close());
      const pid = server.child.pid as number;
      const workers = await eventually('the workers starting', async () => {
        const pids = await childPids(pid);
        return pids.length === WORKERS ? pids : null;
      });
      return { server, client, pid, workers };
    };

    it(
      'serves with every worker, and concurrent changes all land',
      {
        timeout: TEST_TIMEOUT_MS,
      },
      async (t) => {
        const { client, workers } = await start(t);
        const before = await Promise.all(workers.map(cpuTicks));

        const created = await Promise.all(
          Array.from({ length: 200 }, (_, index) => client.create({ name: `image-${index}` })),
        );
        assert.equal(new Set(created.map((image) => image.id)).size, 200);

        const [target] = created as [Image];
        const tags = Array.from({ length: 50 }, (_, index) => `tag-${index}`);
        const tagged = await Promise.all(
          tags.map((tag) => client.call('PUT', `/v2/images/${target.id}/tags/${tag}`)),
        );
        assert.deepEqual(
          tagged.map((response) => response.status),
          tags.map(() => 204),
        );
        assert.deepEqual((await client.show(target.id)).tags.sort(), [...tags].sort());

        const listed = await client.call('GET', '/v2/images?limit=1000');
        assert.equal((JSON.parse(listed.text) as { images: Image[] }).images.length, 200);

        const after = await Promise.all(workers.map(cpuTicks));
        workers.forEach((pid, index) =>
          assert.ok(after[index]! > before[index]!, `worker ${pid} served no request`),
        );
      },
    );

    it('stores uploads made through any worker', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { client } = await start(t);
      const uploads = await Promise.all(
        Array.from({ length: 6 }, async () => {
          const image = await client.create({ disk_format: 'raw', container_format: 'bare' });
          const data = randomBytes(2 * 1024 * 1024 + 7);
          const put = await client.call('PUT', `/v2/images/${image.id}/file`, data, {
            'content-type': 'application/octet-stream',
          });
          assert.equal(put.status, 204, put.text);
          return { id: image.id, md5: createHash('md5').update(data).digest('hex') };
        }),
      );
      for (const { id, md5 } of uploads) {
        const image = await client.show(id);
        assert.equal(image.status, 'active');
        assert.equal(image.checksum, md5);
      }
    });

    it(
      'replaces a killed worker, which undoes the upload it was serving',
      {
        timeout: TEST_TIMEOUT_MS,
      },
      async (t) => {
        const { server, client, pid, workers } = await start(t);
        const image = await client.create({ disk_format: 'raw', container_format: 'bare' });

        // An upload that never ends, held by one of the workers.
        const body = Readable.from(
          (async function* slowly() {
            for (;;) {
              yield Buffer.alloc(64 * 1024, 1);
              await sleep(50);
            }
          })(),
        );
        const upload = request(`${server.url}/v2/images/${image.id}/file`, {
          method: 'PUT',
          headers: { 'content-type': 'application/octet-stream' },
          body,
        }).catch(() => null);
        await eventually('the upload starting', async () =>
          (await client.show(image.id)).status === 'saving' ? true : null,
        );

        for (const worker of workers) process.kill(worker, 'SIGKILL');
        await upload;
        const replaced = await eventually('new workers', async () => {
          const pids = await childPids(pid);
          const fresh = pids.filter((child) => !workers.includes(child));
          return fresh.length === WORKERS ? fresh : null;
        });
        assert.equal(replaced.length, WORKERS, server.output());

        const requeued = await eventually('the upload being undone', async () => {
          const current = await client.show(image.id);
          return current.status === 'queued' ? current : null;
        });
        assert.equal(requeued.size, null);

        const retry = await client.call('PUT', `/v2/images/${image.id}/file`, Buffer.from('ok'), {
          'content-type': 'application/octet-stream',
        });
        assert.equal(retry.status, 204, retry.text);
      },
    );

    it('stops every worker on SIGTERM', { timeout: TEST_TIMEOUT_MS }, async (t) => {
      const { server, workers } = await start(t);
      const exited = new Promise<number | null>((resolve) =>
        server.child.once('exit', (code) => resolve(code)),
      );
      server.child.kill('SIGTERM');
      assert.equal(await exited, 0, server.output());
      for (const worker of workers) {
        assert.throws(() => process.kill(worker, 0), /ESRCH/, `worker ${worker} still runs`);
      }
    });
  });
}
