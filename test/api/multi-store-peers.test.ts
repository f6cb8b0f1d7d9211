/**
 * Three stores of different kinds through the API: a file store, the real Swift that
 * scripts/swift.sh runs (native API) and its S3 API. Swift and S3 are reached through TCP
 * proxies, so the suite can see which store a download read and take a store down in the
 * middle of an upload or a download.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { Agent, request } from 'undici';

import { asProject, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import {
  SWIFT_AUTH_URL,
  SWIFT_KEY,
  SWIFT_S3_ACCESS_KEY,
  SWIFT_S3_ENDPOINT,
  SWIFT_S3_REGION,
  SWIFT_S3_SECRET_KEY,
  SWIFT_USER,
  removeContainers,
  swiftAvailability,
  swiftLogin,
  swiftObjectNames,
} from '../support/swift.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

type Headers = Record<string, string>;
type Image = Record<string, unknown> & { id: string; status: string; stores?: string };

const MIB = 1024 * 1024;
const ALICE = asProject('alice');
const ADMIN = asProject('admin-project', 'admin');
const OCTETS = { 'content-type': 'application/octet-stream' };
const TASK_TIMEOUT_MS = 30_000;

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');

const { skip } = await swiftAvailability();

/** A Glimpse on a loopback port with file, Swift and S3 stores, and ways to inspect them. */
class Deployment {
  readonly #agent = new Agent({ headersTimeout: 30_000, bodyTimeout: 30_000 });

  private constructor(
    readonly t: TestApp,
    readonly port: number,
    readonly swift: { readonly proxy: TcpProxy; readonly container: string },
    readonly s3: { readonly proxy: TcpProxy; readonly bucket: string; readonly client: S3Client },
  ) {}

  static async start(database: Parameters<typeof startTestApp>[0]): Promise<Deployment> {
    const suffix = randomBytes(4).toString('hex');
    // Swift's S3 buckets are its containers: the two stores must not share a name.
    const container = `glimpse-api-swift-${suffix}`;
    const bucket = `glimpse-api-s3-${suffix}`;
    const auth = new URL(SWIFT_AUTH_URL);
    const swiftProxy = await startTcpProxy({ host: auth.hostname, port: Number(auth.port) });
    const s3Endpoint = new URL(SWIFT_S3_ENDPOINT);
    const s3Proxy = await startTcpProxy({
      host: s3Endpoint.hostname,
      port: Number(s3Endpoint.port),
    });
    const t = await startTestApp(database, {
      enabled_backends: ['local:file', 'swift:swift', 's3:s3'],
      default_backend: 'swift',
      store_options: {
        local: { weight: 10 },
        s3: {
          weight: 5,
          s3_store_host: s3Proxy.url,
          s3_store_access_key: SWIFT_S3_ACCESS_KEY,
          s3_store_secret_key: SWIFT_S3_SECRET_KEY,
          s3_store_region_name: SWIFT_S3_REGION,
          s3_store_bucket: bucket,
          s3_store_create_bucket_on_put: true,
          s3_store_large_object_size: 5,
          s3_store_large_object_chunk_size: 5,
          s3_store_thread_pools: 2,
        },
        swift: {
          swift_store_auth_address: `${swiftProxy.url}${auth.pathname}`,
          swift_store_auth_version: '1',
          swift_store_user: SWIFT_USER,
          swift_store_key: SWIFT_KEY,
          swift_store_container: container,
          // Images past 1 MiB are kept as segments, so the segment paths are used.
          swift_store_large_object_size: 1,
          swift_store_large_object_chunk_size: 1,
        },
      },
      enabled_import_methods: ['glance-direct', 'copy-image'],
      // Interrupted writes are cleaned up within a second of their store coming back.
      worker_heartbeat_seconds: 1,
    });
    await t.app.http.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.http.server.address() as AddressInfo;
    const client = new S3Client({
      endpoint: SWIFT_S3_ENDPOINT,
      region: SWIFT_S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: SWIFT_S3_ACCESS_KEY, secretAccessKey: SWIFT_S3_SECRET_KEY },
    });
    return new Deployment(
      t,
      port,
      { proxy: swiftProxy, container },
      { proxy: s3Proxy, bucket, client },
    );
  }

  async close(): Promise<void> {
    await this.#agent.close();
    await this.t.close();
    await Promise.all([this.swift.proxy.close(), this.s3.proxy.close()]);
    await removeContainers([this.swift.container, `${this.swift.container}-segments`]);
    await this.#emptyBucket();
    await this.s3.client.send(new DeleteBucketCommand({ Bucket: this.s3.bucket }));
    this.s3.client.destroy();
  }

  async call(
    method: 'GET' | 'PUT' | 'POST' | 'DELETE',
    path: string,
    options: { headers?: Headers; body?: Buffer | Readable | string } = {},
  ) {
    const response = await request(`http://127.0.0.1:${this.port}${path}`, {
      method,
      headers: options.headers ?? ALICE,
      body: options.body,
      dispatcher: this.#agent,
    });
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, headers: response.headers, body };
  }

  async show(id: string): Promise<Image> {
    const response = await this.t.request({
      method: 'GET',
      url: `/v2/images/${id}`,
      headers: ADMIN,
    });
    assert.equal(response.statusCode, 200, response.body);
    return json<Image>(response);
  }

  async create(): Promise<Image> {
    const response = await this.t.request({
      method: 'POST',
      url: '/v2/images',
      headers: ALICE,
      payload: { disk_format: 'raw', container_format: 'bare' },
    });
    assert.equal(response.statusCode, 201, response.body);
    return json<Image>(response);
  }

  /** An active image whose data was uploaded to `store`. */
  async uploaded(data: Buffer, store: string): Promise<Image> {
    const image = await this.create();
    const response = await this.call('PUT', `/v2/images/${image.id}/file`, {
      headers: { ...ALICE, ...OCTETS, 'x-image-meta-store': store },
      body: data,
    });
    assert.equal(response.status, 204, response.body.toString());
    return this.show(image.id);
  }

  /** Copies an image to more stores with copy-image and waits for the task to end. */
  async copy(id: string, body: Record<string, unknown>): Promise<Image> {
    const response = await this.call('POST', `/v2/images/${id}/import`, {
      headers: { ...ADMIN, 'content-type': 'application/json' },
      body: JSON.stringify({ method: { name: 'copy-image' }, ...body }),
    });
    assert.equal(response.status, 202, response.body.toString());
    const deadline = Date.now() + TASK_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const tasks = await this.t.request({
        method: 'GET',
        url: `/v2/images/${id}/tasks`,
        headers: ADMIN,
      });
      const [task] = json<{ tasks: Array<{ status: string; message: string }> }>(tasks).tasks;
      if (task?.status === 'success') return this.show(id);
      if (task?.status === 'failure') throw new Error(`copy-image failed: ${task.message}`);
      await sleep(50);
    }
    throw new Error(`copy-image of ${id} did not end`);
  }

  /** Object names of an image in Swift: the object itself and its segments. */
  async swiftObjects(id: string): Promise<string[]> {
    const login = await swiftLogin();
    const objects = await swiftObjectNames(this.swift.container, id, login);
    const segments = await swiftObjectNames(`${this.swift.container}-segments`, `${id}/`, login);
    return [...objects, ...segments];
  }

  /** The image's object in the bucket, and its unfinished multipart uploads. */
  async s3Objects(id: string): Promise<string[]> {
    const Bucket = this.s3.bucket;
    const objects = await this.s3.client.send(new ListObjectsV2Command({ Bucket, Prefix: id }));
    const uploads = await this.s3.client.send(
      new ListMultipartUploadsCommand({ Bucket, Prefix: id }),
    );
    return [
      ...(objects.Contents ?? []).map((object) => `object ${object.Key}`),
      ...(uploads.Uploads ?? []).map((upload) => `upload ${upload.UploadId}`),
    ];
  }

  async #emptyBucket(): Promise<void> {
    const Bucket = this.s3.bucket;
    const page = await this.s3.client.send(new ListObjectsV2Command({ Bucket }));
    for (const { Key } of page.Contents ?? []) {
      await this.s3.client.send(new DeleteObjectCommand({ Bucket, Key }));
    }
  }
}

/** Yields `data` in 256 KiB chunks, calling `atChunk` before each. */
function streamed(data: Buffer, atChunk: (index: number) => void): Readable {
  const size = 256 * 1024;
  return Readable.from(
    (async function* chunks() {
      for (let index = 0; index * size < data.length; index++) {
        atChunk(index);
        yield data.subarray(index * size, (index + 1) * size);
        await sleep(5);
      }
    })(),
  );
}

/**
 * Waits for `condition` to hold. A probe that throws (a store slow to answer just after an
 * outage) counts as not yet, and is retried; the last error is reported on timeout.
 */
async function eventually(what: string, condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 15_000;
  let lastError: unknown = null;
  for (;;) {
    try {
      if (await condition()) return;
      lastError = null;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError === null ? '' : ` (last probe: ${String(lastError)})`;
      throw new Error(`${what} did not happen within 15 s${cause}`, { cause: lastError });
    }
    await sleep(100);
  }
}

const [sqlite] = await testDatabases();

describe('file, Swift and S3 stores', { skip: skip ?? false }, () => {
  let d: Deployment;

  before(async () => {
    d = await Deployment.start(sqlite!);
  });
  after(() => d?.close());

  it('uploads to each store and reads the data back from it', async () => {
    const data = randomBytes(3 * MIB + 123);
    for (const store of ['local', 'swift', 's3']) {
      const image = await d.uploaded(data, store);
      assert.equal(image.stores, store);
      assert.equal(image.checksum, md5(data));
      const download = await d.call('GET', `/v2/images/${image.id}/file`);
      assert.equal(download.status, 200);
      assert.ok(download.body.equals(data), `${store}: bytes differ`);
    }
    const swiftImage = await d.uploaded(data, 'swift');
    // 3 MiB and a bit in 1 MiB segments: a manifest and four segments.
    assert.equal((await d.swiftObjects(swiftImage.id)).length, 5);
    const s3Image = await d.uploaded(data, 's3');
    assert.deepEqual(await d.s3Objects(s3Image.id), [`object ${s3Image.id}`]);
  });

  it('copies an image to the other stores and reads the copy asked for', async () => {
    const data = randomBytes(6 * MIB + 7);
    const image = await d.uploaded(data, 'local');
    const copied = await d.copy(image.id, { all_stores: true });
    assert.equal(copied.stores, 'local,s3,swift');
    assert.equal(copied.checksum, md5(data));

    const through = () => ({
      swift: d.swift.proxy.bytesFromServer(),
      s3: d.s3.proxy.bytesFromServer(),
    });
    for (const store of ['swift', 's3', 'local']) {
      const before = through();
      const download = await d.call('GET', `/v2/images/${image.id}/file?prefer=${store}`);
      assert.equal(download.status, 200);
      assert.ok(download.body.equals(data), `${store}: bytes differ`);
      const after = through();
      for (const remote of ['swift', 's3'] as const) {
        const read = after[remote] - before[remote];
        if (remote === store) assert.ok(read >= data.length, `${remote} sent only ${read}`);
        else assert.ok(read < MIB, `${remote} sent ${read} bytes for a ${store} download`);
      }
    }
  });

  it('deletes the copy in one store, and never the last one', async () => {
    const data = randomBytes(2 * MIB);
    const image = await d.uploaded(data, 'swift');
    await d.copy(image.id, { stores: ['s3', 'local'] });
    assert.ok((await d.swiftObjects(image.id)).length > 0);

    const swift = await d.call('DELETE', `/v2/stores/swift/${image.id}`, { headers: ADMIN });
    assert.equal(swift.status, 204, swift.body.toString());
    assert.deepEqual(await d.swiftObjects(image.id), []);
    const s3 = await d.call('DELETE', `/v2/stores/s3/${image.id}`, { headers: ADMIN });
    assert.equal(s3.status, 204, s3.body.toString());
    assert.deepEqual(await d.s3Objects(image.id), []);
    assert.equal((await d.show(image.id)).stores, 'local');

    const last = await d.call('DELETE', `/v2/stores/local/${image.id}`, { headers: ADMIN });
    assert.equal(last.status, 403);
    const download = await d.call('GET', `/v2/images/${image.id}/file`);
    assert.ok(download.body.equals(data));
  });

  it('deletes every copy, segments included, with the image', async () => {
    const image = await d.uploaded(randomBytes(3 * MIB), 'swift');
    await d.copy(image.id, { stores: ['s3'] });
    const deleted = await d.call('DELETE', `/v2/images/${image.id}`);
    assert.equal(deleted.status, 204);
    assert.deepEqual(await d.swiftObjects(image.id), []);
    assert.deepEqual(await d.s3Objects(image.id), []);
  });

  it('reads another copy when the preferred store is down', async () => {
    const data = randomBytes(MIB + 5);
    const image = await d.uploaded(data, 'swift');
    await d.copy(image.id, { stores: ['s3'] });
    d.swift.proxy.refuse(true);
    d.swift.proxy.cutAll();
    try {
      const download = await d.call('GET', `/v2/images/${image.id}/file?prefer=swift`);
      assert.equal(download.status, 200);
      assert.ok(download.body.equals(data));
    } finally {
      d.swift.proxy.refuse(false);
    }
  });

  it('cuts a download short when its store fails midway, and serves it again later', async () => {
    const data = randomBytes(4 * MIB);
    const image = await d.uploaded(data, 's3');
    d.s3.proxy.cutAfterBytes(MIB);
    let cut: { complete: boolean; status: number } | { error: unknown };
    try {
      const response = await request(`http://127.0.0.1:${d.port}/v2/images/${image.id}/file`, {
        headers: ALICE,
      });
      const body = await response.body.arrayBuffer().catch((error: unknown) => ({ error }));
      cut =
        'error' in body
          ? body
          : { complete: body.byteLength === data.length, status: response.statusCode };
    } catch (error) {
      cut = { error };
    } finally {
      d.s3.proxy.cutAfterBytes(null);
    }
    assert.ok('error' in cut || !cut.complete, 'a download whose store failed looked complete');

    assert.equal((await d.show(image.id)).status, 'active');
    const again = await d.call('GET', `/v2/images/${image.id}/file`);
    assert.ok(again.body.equals(data));
  });

  for (const store of ['swift', 's3'] as const) {
    it(`answers 503 naming ${store} when it goes down mid-upload, and leaves nothing`, async () => {
      const proxy = store === 'swift' ? d.swift.proxy : d.s3.proxy;
      const image = await d.create();
      // Large enough for several Swift segments and S3 parts before the store goes down.
      const data = randomBytes(16 * MIB);
      const body = streamed(data, (index) => {
        if (index === 48) {
          proxy.refuse(true);
          proxy.cutAll();
        }
      });
      try {
        const response = await d.call('PUT', `/v2/images/${image.id}/file`, {
          headers: { ...ALICE, ...OCTETS, 'x-image-meta-store': store },
          body,
        });
        assert.equal(response.status, 503, response.body.toString());
        assert.match(response.body.toString(), new RegExp(`store ${store}\\b`));
      } finally {
        proxy.refuse(false);
      }
      const after = await d.show(image.id);
      assert.equal(after.status, 'queued');
      assert.equal(after.size, null);

      const left = () => (store === 'swift' ? d.swiftObjects(image.id) : d.s3Objects(image.id));
      await eventually(
        'the removal of what the upload left',
        async () => (await left()).length === 0,
      );

      // The store is back: the same image takes a new upload. A smaller one shows it as well
      // (still several Swift segments), and each Swift request may cost a check at Keystone.
      const retry = await d.call('PUT', `/v2/images/${image.id}/file`, {
        headers: { ...ALICE, ...OCTETS, 'x-image-meta-store': store },
        body: data.subarray(0, 3 * MIB),
      });
      assert.equal(retry.status, 204, retry.body.toString());
    });
  }

  // Below the large object size, a declared size makes the Swift write one PUT of that size.
  it('refuses more or fewer bytes than declared, leaving nothing in Swift', async () => {
    const image = await d.create();
    for (const declared of ['10', '100000']) {
      const sized = await d.call('PUT', `/v2/images/${image.id}/file`, {
        headers: {
          ...ALICE,
          ...OCTETS,
          'x-image-meta-store': 'swift',
          'x-openstack-image-size': declared,
        },
        body: randomBytes(50_000),
      });
      assert.equal(sized.status, 400, sized.body.toString());
      assert.match(sized.body.toString(), /does not match the declared size/);
    }
    assert.equal((await d.show(image.id)).status, 'queued');
    assert.deepEqual(await d.swiftObjects(image.id), []);
  });

  it('reports data lost from its only store as missing, not as a server error', async () => {
    const image = await d.uploaded(randomBytes(1000), 's3');
    await d.s3.client.send(new DeleteObjectCommand({ Bucket: d.s3.bucket, Key: image.id }));
    const download = await d.call('GET', `/v2/images/${image.id}/file`);
    assert.equal(download.status, 503);
    assert.match(download.body.toString(), /missing from its store/);
    assert.equal((await d.show(image.id)).status, 'active');
  });

  it('refuses a store id it does not have, before touching any store', async () => {
    const image = await d.create();
    const response = await d.call('PUT', `/v2/images/${image.id}/file`, {
      headers: { ...ALICE, ...OCTETS, 'x-image-meta-store': `nowhere-${randomUUID()}` },
      body: Buffer.from('data'),
    });
    assert.equal(response.status, 400);
    assert.equal((await d.show(image.id)).status, 'queued');
  });
});
