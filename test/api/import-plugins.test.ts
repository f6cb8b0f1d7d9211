import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import { buildQemuImages, qemuImg, qemuVirtualSize } from '../support/images.js';
import {
  assertImportBookkeeping,
  assertImportUndone,
  importLeftovers,
  type ImageView,
} from '../support/imports.js';

const [sqlite] = await testDatabases();
const MEMBER = asProject('p1');

function qemuImgProblem(): string | null {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return null;
  } catch {
    const problem = 'qemu-img (Debian qemu-utils) is missing';
    if (process.env.CI === 'true') throw new Error(`${problem}; CI requires it`);
    process.stdout.write(`# skipping import plugin suite: ${problem}\n`);
    return problem;
  }
}

describe('import plugins in the import flow', { skip: qemuImgProblem() ?? false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'glimpse-plugins-'));
  const bodies = new Map<string, Buffer>();
  let source: Server;
  let port = 0;
  let t: TestApp;

  before(async () => {
    source = createServer((request, response) => {
      const body = bodies.get(request.url ?? '');
      if (!body) return response.writeHead(404).end();
      response.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((resolve) => source.listen(0, '127.0.0.1', resolve));
    port = (source.address() as AddressInfo).port;
    t = await startTestApp(sqlite!, {
      allowed_hosts: ['127.0.0.1'],
      allowed_ports: [String(port)],
      image_size_cap: 64 * 1024 * 1024,
      image_import_plugins: ['image_decompression', 'image_conversion', 'inject_image_metadata'],
      inject_metadata_properties: ['vendor:glimpse'],
    });
  });
  after(async () => {
    await t?.close();
    source?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const importFrom = async (path: string, diskFormat: string, app: TestApp = t) => {
    const created = await app.request({
      method: 'POST',
      url: '/v2/images',
      headers: MEMBER,
      payload: JSON.stringify({ disk_format: diskFormat, container_format: 'bare' }),
    });
    const { id } = json<{ id: string }>(created);
    const uri = `http://127.0.0.1:${port}${path}`;
    const started = await app.request({
      method: 'POST',
      url: `/v2/images/${id}/import`,
      headers: MEMBER,
      payload: JSON.stringify({ method: { name: 'web-download', uri } }),
    });
    assert.equal(started.statusCode, 202, started.body);
    return { id, task: await finishedTask(id, app) };
  };

  const finishedTask = async (id: string, app: TestApp) => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const response = await app.request({
        method: 'GET',
        url: `/v2/images/${id}/tasks`,
        headers: MEMBER,
      });
      const [task] = json<{ tasks: Array<{ status: string; message: string }> }>(response).tasks;
      if (task && (task.status === 'success' || task.status === 'failure')) return task;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`import of ${id} did not finish`);
  };

  const show = async (id: string, app: TestApp = t) =>
    json<ImageView>(
      await app.request({ method: 'GET', url: `/v2/images/${id}`, headers: MEMBER }),
    );

  it('decompresses, converts to raw and injects properties, then stores the result', async () => {
    const qcow2 = join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '8M']);
    bodies.set('/disk.qcow2.gz', gzipSync(readFileSync(qcow2)));

    const { id, task } = await importFrom('/disk.qcow2.gz', 'qcow2');
    assert.equal(task.status, 'success', task.message);
    const image = await show(id);
    assert.equal(image.status, 'active');
    assert.equal(image.disk_format, 'raw');
    assert.equal(image.container_format, 'bare');
    assert.equal(image.size, 8 * 1024 * 1024);
    assert.equal(image.virtual_size, 8 * 1024 * 1024);
    assert.equal(image.vendor, 'glimpse');
  });

  it('converts to vmdk when that is the output format', async () => {
    buildQemuImages(dir);
    bodies.set('/disk.qcow2', readFileSync(join(dir, 'disk.qcow2')));
    const toVmdk = await startTestApp(sqlite!, {
      allowed_hosts: ['127.0.0.1'],
      allowed_ports: [String(port)],
      image_import_plugins: ['image_conversion'],
      image_conversion_output_format: 'vmdk',
    });
    try {
      const { id, task } = await importFrom('/disk.qcow2', 'qcow2', toVmdk);
      assert.equal(task.status, 'success', task.message);
      const image = await show(id, toVmdk);
      assert.equal(image.status, 'active');
      assert.equal(image.disk_format, 'vmdk');
      assert.equal(image.container_format, 'bare');
      assertImportBookkeeping(image);
      assert.deepEqual(await importLeftovers(toVmdk, id), []);

      const download = await toVmdk.request({
        method: 'GET',
        url: `/v2/images/${id}/file`,
        headers: MEMBER,
      });
      assert.equal(download.statusCode, 200);
      assert.equal(image.size, download.rawPayload.length);
      const stored = join(dir, 'stored.vmdk');
      writeFileSync(stored, download.rawPayload);
      // qemu-img reads it as a VMDK of the same disk, and the same data, as the source.
      assert.equal(qemuVirtualSize(stored, 'vmdk'), qemuVirtualSize(join(dir, 'disk.raw')));
      assert.equal(image.virtual_size, qemuVirtualSize(stored, 'vmdk'));
      qemuImg('compare', '-q', '-f', 'raw', '-F', 'vmdk', join(dir, 'disk.raw'), stored);
    } finally {
      await toVmdk.close();
    }
  });

  it('stops a compression bomb at the size cap and leaves the image queued', async () => {
    const bomb = gzipSync(Buffer.alloc(80 * 1024 * 1024));
    bodies.set('/bomb.gz', bomb);

    const { id, task } = await importFrom('/bomb.gz', 'raw');
    assert.equal(task.status, 'failure');
    assert.match(task.message, /size cap/);
    await assertImportUndone(t, await show(id));
  });

  it('refuses a qcow2 with a backing file during conversion', async () => {
    const base = join(dir, 'base.raw');
    const child = join(dir, 'child.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'raw', base, '1M']);
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', child]);
    bodies.set('/child.qcow2', readFileSync(child));

    const { id, task } = await importFrom('/child.qcow2', 'qcow2');
    assert.equal(task.status, 'failure');
    assert.match(task.message, /backing/i);
    await assertImportUndone(t, await show(id));
  });
});
