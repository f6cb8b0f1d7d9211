/**
 * The glance-download import method between two regions: a second Glimpse process serves
 * RegionTwo at http://127.0.0.1:9393, where the Keystone fixtures (scripts/keystone.sh) put
 * RegionTwo's image endpoint, and the Glimpse under test imports from it. Both validate
 * tokens with the real Keystone.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  getToken,
  keystoneProblem,
  keystoneServerEnv,
  type KeystoneToken,
} from '../support/keystone.js';
import { startServer, stopServer, type ServerProcess } from '../support/server-process.js';

/** RegionTwo's image endpoint in the Keystone fixtures. */
const REGION_TWO_PORT = 9393;
const TASK_TIMEOUT_MS = 30_000;
const IMPORT_METHODS = 'glance-direct,web-download,glance-download';

const skip = await keystoneProblem();

interface Answer {
  status: number;
  json: Record<string, unknown>;
  text: string;
}

async function call(
  server: ServerProcess,
  token: KeystoneToken,
  method: string,
  path: string,
  body?: Buffer | Record<string, unknown>,
): Promise<Answer> {
  const headers: Record<string, string> = { 'x-auth-token': token.token };
  if (Buffer.isBuffer(body)) headers['content-type'] = 'application/octet-stream';
  else if (body) headers['content-type'] = 'application/json';
  const response = await fetch(new URL(path, server.url), {
    method,
    headers,
    body: Buffer.isBuffer(body) || body === undefined ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    json = {};
  }
  return { status: response.status, json, text };
}

async function createImage(
  server: ServerProcess,
  token: KeystoneToken,
  extra: Record<string, unknown> = {},
): Promise<string> {
  const created = await call(server, token, 'POST', '/v2/images', {
    disk_format: 'raw',
    container_format: 'bare',
    ...extra,
  });
  assert.equal(created.status, 201, created.text);
  return created.json.id as string;
}

describe('glance-download from another region', { skip: skip ?? false }, () => {
  let local: ServerProcess;
  let remote: ServerProcess;
  let alpha: KeystoneToken;
  let beta: KeystoneToken;

  before(async () => {
    const keystone = keystoneServerEnv();
    remote = await startServer({ port: REGION_TWO_PORT, env: keystone });
    local = await startServer({
      env: {
        ...keystone,
        GLIMPSE_ENABLED_IMPORT_METHODS: IMPORT_METHODS,
        // The remote endpoint is on loopback, which imports refuse unless allowed.
        GLIMPSE_ALLOWED_HOSTS: '127.0.0.1',
        GLIMPSE_ALLOWED_PORTS: `80,443,${REGION_TWO_PORT}`,
      },
    });
    alpha = await getToken('alpha-member', 'alpha');
    beta = await getToken('beta-member', 'beta');
  });

  after(async () => {
    for (const server of [local, remote]) if (server) await stopServer(server);
  });

  /** Starts a glance-download and waits for its task to end. */
  async function importFrom(remoteId: string, method: Record<string, unknown> = {}) {
    const id = await createImage(local, alpha);
    const accepted = await call(local, alpha, 'POST', `/v2/images/${id}/import`, {
      method: {
        name: 'glance-download',
        glance_region: 'RegionTwo',
        glance_image_id: remoteId,
        ...method,
      },
    });
    assert.equal(accepted.status, 202, accepted.text);
    const deadline = Date.now() + TASK_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const tasks = await call(local, alpha, 'GET', `/v2/images/${id}/tasks`);
      const [task] = tasks.json.tasks as Array<Record<string, unknown>>;
      if (task && (task.status === 'success' || task.status === 'failure')) {
        const image = (await call(local, alpha, 'GET', `/v2/images/${id}`)).json;
        return { id, task, image };
      }
      await sleep(100);
    }
    throw new Error(`the glance-download of ${remoteId} did not end`);
  }

  async function assertNothingStaged(id: string): Promise<void> {
    const staged = await readdir(join(local.dataDir, 'staging'));
    assert.ok(!staged.some((name) => name.startsWith(id)), 'staged data was left behind');
  }

  it('copies the data, the formats and the chosen properties of the remote image', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 11);
    const remoteId = await createImage(remote, alpha, {
      name: 'from region two',
      container_format: 'ovf',
      hw_disk_bus: 'scsi',
      os_distro: 'debian',
      custom_note: 'stays behind',
    });
    const uploaded = await call(remote, alpha, 'PUT', `/v2/images/${remoteId}/file`, data);
    assert.equal(uploaded.status, 204, uploaded.text);

    const { id, task, image } = await importFrom(remoteId);
    assert.equal(task.status, 'success', String(task.message));
    assert.equal(image.status, 'active');
    assert.equal(image.checksum, createHash('md5').update(data).digest('hex'));
    assert.equal(image.size, data.length);
    assert.equal(image.container_format, 'ovf');
    assert.equal(image.hw_disk_bus, 'scsi');
    assert.equal(image.os_distro, 'debian');
    assert.equal(image.custom_note, undefined);
    assert.equal(image.name, null);

    const download = await fetch(new URL(`/v2/images/${id}/file`, local.url), {
      headers: { 'x-auth-token': alpha.token },
    });
    assert.ok(Buffer.from(await download.arrayBuffer()).equals(data));
    await assertNothingStaged(id);
  });

  it('fails the task, and leaves the image queued, for an image the caller cannot see', async () => {
    const hidden = await createImage(remote, beta, { visibility: 'private' });
    await call(remote, beta, 'PUT', `/v2/images/${hidden}/file`, randomBytes(1000));

    for (const remoteId of [hidden, randomUUID()]) {
      const { id, task, image } = await importFrom(remoteId);
      assert.equal(task.status, 'failure');
      assert.match(String(task.message), /not found in region RegionTwo/);
      assert.equal(image.status, 'queued');
      assert.equal(image.os_glance_import_task, undefined);
      assert.equal(image.disk_format, 'raw');
      await assertNothingStaged(id);
    }
  });

  it('fails the task for a remote image without data, and for an unknown region', async () => {
    const empty = await createImage(remote, alpha);
    const notActive = await importFrom(empty);
    assert.equal(notActive.task.status, 'failure');
    assert.match(String(notActive.task.message), /should be active instead of queued/);
    assert.equal(notActive.image.status, 'queued');

    const nowhere = await importFrom(empty, { glance_region: 'RegionNine' });
    assert.equal(nowhere.task.status, 'failure');
    assert.match(String(nowhere.task.message), /region RegionNine/);
  });

  it('refuses a request without a region or with an id that is no UUID', async () => {
    const id = await createImage(local, alpha);
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ glance_image_id: randomUUID() }, /glance_region\S* needs to be set/],
      [{ glance_region: 'RegionTwo' }, /glance_image_id\S* needs to be set/],
      [{ glance_region: 'RegionTwo', glance_image_id: 'nope' }, /does not look like a UUID/],
    ];
    for (const [fields, message] of cases) {
      const answer = await call(local, alpha, 'POST', `/v2/images/${id}/import`, {
        method: { name: 'glance-download', ...fields },
      });
      assert.equal(answer.status, 400, answer.text);
      assert.match(answer.text, message);
    }
  });

  it('is not offered by a server that does not enable it', async () => {
    const info = await call(remote, alpha, 'GET', '/v2/info/import');
    const methods = (info.json['import-methods'] as { value: string[] }).value;
    assert.ok(!methods.includes('glance-download'));
    const offered = await call(local, alpha, 'GET', '/v2/info/import');
    assert.ok(
      (offered.json['import-methods'] as { value: string[] }).value.includes('glance-download'),
    );
  });
});
