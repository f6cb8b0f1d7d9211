/**
 * Image data over HTTP, on a listening server so that chunked bodies, aborted connections and
 * malformed framing are real: uploads, format inspection of real disk images, downloads and
 * ranges, checksum verification of stored data, staging, and what is left in the store after
 * every failure.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request, type Dispatcher } from 'undici';

import type { OptionName } from '../../src/config/schema.js';
import { asProject, createImage, showImage, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases, type TestDatabase } from '../support/databases.js';
import {
  buildBackedQcow2,
  buildExternalDataQcow2,
  buildIso,
  buildQemuImages,
  qemuSkip,
  qemuVirtualSize,
  QEMU_IMAGES,
  rewriteVmdkDescriptor,
} from '../support/images.js';
import { assertActiveWith } from '../support/imports.js';

type Image = Record<string, unknown> & { id: string; status: string };
type Headers = Record<string, string>;

const KiB = 1024;
const MiB = 1024 * KiB;

const ALICE = asProject('alice');
const BOB = asProject('bob');
const ALICE_READER = asProject('alice', 'reader');
const ADMIN = asProject('admin-project', 'admin');
const OCTETS: Headers = { 'content-type': 'application/octet-stream' };
const RAW_BARE = { disk_format: 'raw', container_format: 'bare' };

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');

/** Splits `data` into pieces of `size` bytes (the last one shorter). */
function pieces(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += size) out.push(data.subarray(at, at + size));
  return out;
}

/**
 * A streamed body, one piece of `size` bytes at a time, `delayMs` apart: sent with chunked
 * transfer encoding unless the request names a Content-Length.
 */
function chunked(data: Buffer, size: number, delayMs = 0): Readable {
  async function* generate(): AsyncGenerator<Buffer> {
    for (const piece of pieces(data, size)) {
      yield piece;
      await sleep(delayMs);
    }
  }
  return Readable.from(generate(), { objectMode: false });
}

interface Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** What a client saw of an exchange that the server may cut short. */
interface Exchange {
  /** Status of the response, or null when none arrived. */
  readonly status: number | null;
  readonly body: Buffer;
  /** The response body arrived in full, with a clean end. */
  readonly complete: boolean;
  readonly error: string | null;
}

/** Polls `condition` until it holds, failing after `timeoutMs`. */
async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** `promise`, or a failure naming `what` when it takes longer than `timeoutMs`. */
async function within<T>(promise: Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects a response, settling once it ends or its connection goes. */
function collect(outgoing: http.ClientRequest): Promise<Exchange> {
  return new Promise((resolve) => {
    let status: number | null = null;
    const received: Buffer[] = [];
    let settled = false;
    const settle = (complete: boolean, error: string | null) => {
      if (settled) return;
      settled = true;
      resolve({ status, body: Buffer.concat(received), complete, error });
    };
    outgoing.on('response', (incoming) => {
      status = incoming.statusCode ?? null;
      incoming.on('data', (chunk: Buffer) => received.push(chunk));
      incoming.on('end', () => settle(incoming.complete, null));
      incoming.on('error', (error) => settle(false, error.message));
      incoming.on('close', () => settle(incoming.complete, 'response closed'));
    });
    outgoing.on('error', (error) => settle(false, error.message));
    outgoing.on('close', () => settle(false, 'connection closed'));
  });
}

/**
 * A PUT of image data through node:http whose body is sent only when the test says so, with
 * Content-Length when the headers name one and chunked otherwise. A test that stops sending
 * once the server has answered never races a write against the server closing the connection.
 */
class OpenUpload {
  readonly result: Promise<Exchange>;
  readonly #outgoing: http.ClientRequest;
  #answered = false;

  constructor(port: number, id: string, headers: Headers) {
    this.#outgoing = http.request({
      host: '127.0.0.1',
      port,
      method: 'PUT',
      path: `/v2/images/${id}/file`,
      headers,
      agent: false,
    });
    this.#outgoing.on('response', () => {
      this.#answered = true;
    });
    this.result = collect(this.#outgoing);
    this.#outgoing.flushHeaders();
  }

  /** A response has started to arrive. */
  get answered(): boolean {
    return this.#answered;
  }

  /** Sends `data` and resolves once it is handed to the kernel. */
  send(data: Buffer): Promise<void> {
    return new Promise((done, fail) => {
      this.#outgoing.write(data, (error) => (error ? fail(error) : done()));
    });
  }

  /** The response, failing when none comes within a few seconds (a hang). */
  answer(): Promise<Exchange> {
    return within(this.result, 'answer to the upload');
  }

  finish(): Promise<Exchange> {
    this.#outgoing.end();
    return this.answer();
  }

  destroy(): void {
    this.#outgoing.destroy();
  }
}

/** A Glimpse listening on a loopback port, with helpers speaking HTTP to it. */
class Server {
  private constructor(
    readonly t: TestApp,
    readonly port: number,
    private readonly agent: Agent,
  ) {}

  readonly #uploads: OpenUpload[] = [];

  static async start(
    database: TestDatabase,
    options: Partial<Record<OptionName, unknown>> = {},
  ): Promise<Server> {
    const t = await startTestApp(database, options);
    await t.app.http.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.http.server.address() as AddressInfo;
    return new Server(t, port, new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 }));
  }

  async close(): Promise<void> {
    // An upload a failed test left open would keep the server from closing.
    for (const upload of this.#uploads) upload.destroy();
    await this.agent.close();
    await this.t.close();
  }

  get imagesDir(): string {
    return join(this.t.dataDir, 'images');
  }

  create(body: Record<string, unknown>, headers: Headers = ALICE): Promise<Image> {
    return createImage<Image>(this.t, body, headers);
  }

  show(id: string, headers: Headers = ALICE): Promise<Image> {
    return showImage<Image>(this.t, id, headers);
  }

  async call(
    method: Dispatcher.HttpMethod,
    path: string,
    options: { headers?: Headers; body?: Buffer | Readable } = {},
  ): Promise<Response> {
    const response = await request(`http://127.0.0.1:${this.port}${path}`, {
      method,
      headers: options.headers ?? {},
      body: options.body,
      dispatcher: this.agent,
    });
    const body = Buffer.from(await response.body.arrayBuffer());
    return { status: response.statusCode, headers: response.headers, body };
  }

  /** PUT of image data; `headers` replace the octet-stream Content-Type when given. */
  upload(
    id: string,
    body: Buffer | Readable,
    headers: Headers = OCTETS,
    who: Headers = ALICE,
    target: 'file' | 'stage' = 'file',
  ): Promise<Response> {
    return this.call('PUT', `/v2/images/${id}/${target}`, {
      headers: { ...who, ...headers },
      body,
    });
  }

  download(id: string, headers: Headers = {}, who: Headers = ALICE): Promise<Response> {
    return this.call('GET', `/v2/images/${id}/file`, { headers: { ...who, ...headers } });
  }

  async action(id: string, name: 'deactivate' | 'reactivate', who: Headers = ALICE) {
    return this.call('POST', `/v2/images/${id}/actions/${name}`, { headers: who });
  }

  /** A raw-bytes image declared raw/bare, uploaded and active. */
  async activeImage(data: Buffer, extra: Record<string, unknown> = {}): Promise<Image> {
    const image = await this.create({ ...RAW_BARE, ...extra });
    const response = await this.upload(image.id, data);
    assert.equal(response.status, 204, response.body.toString());
    return this.show(image.id);
  }

  /** A download through node:http, telling a clean end from a cut-off body. */
  rawDownload(id: string): Promise<Exchange> {
    const outgoing = http.get({
      host: '127.0.0.1',
      port: this.port,
      path: `/v2/images/${id}/file`,
      headers: ALICE,
      agent: false,
    });
    return within(collect(outgoing), 'end of the download');
  }

  /** An upload whose body the test then sends piece by piece. */
  openUpload(id: string, headers: Headers = {}): OpenUpload {
    const upload = new OpenUpload(this.port, id, { ...ALICE, ...OCTETS, ...headers });
    this.#uploads.push(upload);
    return upload;
  }

  /**
   * Sends hand-made bytes over a plain TCP connection and collects whatever comes back until
   * the server closes the connection, or `timeoutMs` passes (a hang).
   */
  rawExchange(
    send: (socket: net.Socket) => Promise<void>,
    timeoutMs = 5000,
  ): Promise<{ status: number | null; text: string; hung: boolean }> {
    return new Promise((resolve) => {
      const socket = net.connect(this.port, '127.0.0.1');
      const received: Buffer[] = [];
      let settled = false;
      const settle = (hung: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        const text = Buffer.concat(received).toString('latin1');
        const status = /^HTTP\/1\.[01] (\d{3}) /.exec(text)?.[1];
        resolve({ status: status === undefined ? null : Number(status), text, hung });
      };
      const timer = setTimeout(() => settle(true), timeoutMs);
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      socket.on('error', () => undefined);
      socket.on('close', () => settle(false));
      socket.on('connect', () => {
        send(socket).catch(() => undefined);
      });
    });
  }

  /** Polls the image until `accept` holds, failing with its last state after `timeoutMs`. */
  async eventually(
    id: string,
    accept: (image: Image) => boolean,
    timeoutMs = 5000,
  ): Promise<Image> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const image = await this.show(id);
      if (accept(image)) return image;
      if (Date.now() > deadline) {
        assert.fail(`image never reached the expected state: ${JSON.stringify(image)}`);
      }
      await sleep(20);
    }
  }

  /** Files of writes in progress, of this image only when `id` is given. */
  async partials(id?: string): Promise<string[]> {
    const names = await readdir(join(this.imagesDir, '.partial'));
    return id === undefined ? names : names.filter((name) => name.startsWith(`${id}.`));
  }

  /** The image is queued with no data attributes, and the stores hold nothing of it. */
  async assertQueuedWithoutData(id: string): Promise<void> {
    const image = await this.show(id);
    assert.equal(image.status, 'queued');
    assert.equal(image.size, null);
    assert.equal(image.virtual_size, null);
    assert.equal(image.checksum, null);
    assert.equal(image.os_hash_value, null);

    const stored = await readdir(this.imagesDir);
    assert.ok(!stored.includes(id), `${id} left data in the file store`);
    assert.deepEqual(await this.partials(), [], 'writes in progress left behind');
    const staged = await readdir(join(this.t.dataDir, 'staging'));
    assert.ok(!staged.includes(id), `${id} left data in staging`);
    assert.equal((await this.download(id)).status, 204);
  }
}

function assertFullDownload(response: Response, data: Buffer): void {
  assert.equal(response.status, 200);
  assert.equal(response.headers['content-length'], String(data.length));
  assert.equal(response.headers['content-md5'], md5(data));
  assert.equal(response.headers['content-type'], 'application/octet-stream');
  assert.ok(response.body.equals(data), 'downloaded bytes differ from the uploaded ones');
}

const text = (response: Response | Exchange) => response.body.toString('utf8');

for (const database of await testDatabases()) {
  describe(`image data API on ${database.name}`, { skip: database.skip ?? false }, () => {
    let s: Server;
    before(async () => {
      s = await Server.start(database);
    });
    after(() => s?.close());

    describe('upload and download', () => {
      it('stores an upload sent with Content-Length and serves the same bytes', async () => {
        const data = randomBytes(3 * MiB + 17);
        const image = await s.create(RAW_BARE);

        const response = await s.upload(image.id, data);
        assert.equal(response.status, 204, text(response));
        assert.equal(response.body.length, 0);

        const shown = await s.show(image.id);
        assertActiveWith(shown, data);
        assert.equal(shown.virtual_size, data.length);
        assertFullDownload(await s.download(image.id), data);
        assert.ok((await readFile(join(s.imagesDir, image.id))).equals(data));
      });

      it('stores an upload sent with chunked transfer encoding', async () => {
        const data = randomBytes(2 * MiB + 4093);
        const image = await s.create(RAW_BARE);

        const response = await s.upload(image.id, chunked(data, 65521));
        assert.equal(response.status, 204, text(response));

        assertActiveWith(await s.show(image.id), data);
        assertFullDownload(await s.download(image.id), data);
      });

      it('answers 204 without a body for the file of a queued image', async () => {
        const image = await s.create(RAW_BARE);
        const response = await s.download(image.id);
        assert.equal(response.status, 204);
        assert.equal(response.body.length, 0);

        const ranged = await s.download(image.id, { range: 'bytes=0-0' });
        assert.ok([204, 416].includes(ranged.status), `range on no data: ${ranged.status}`);
      });

      it("hides another project's private image data with 404", async () => {
        const image = await s.activeImage(randomBytes(100), { visibility: 'private' });
        assert.equal((await s.download(image.id, {}, BOB)).status, 404);

        const queued = await s.create({ ...RAW_BARE, visibility: 'private' });
        const refused = await s.upload(queued.id, randomBytes(100), OCTETS, BOB);
        assert.equal(refused.status, 404);
        await s.assertQueuedWithoutData(queued.id);
      });

      it('keeps readers from uploading and downloading with 403', async () => {
        const image = await s.create(RAW_BARE);
        const refused = await s.upload(image.id, randomBytes(100), OCTETS, ALICE_READER);
        assert.equal(refused.status, 403, text(refused));
        await s.assertQueuedWithoutData(image.id);

        const data = randomBytes(100);
        assert.equal((await s.upload(image.id, data)).status, 204);
        assert.equal((await s.show(image.id, ALICE_READER)).status, 'active');
        const download = await s.download(image.id, {}, ALICE_READER);
        assert.equal(download.status, 403, text(download));
        assert.match(text(download), /download_image/);
      });

      it('refuses an upload to an active image with 409 and keeps its data', async () => {
        const data = randomBytes(5000);
        const image = await s.activeImage(data);

        const response = await s.upload(image.id, randomBytes(5000));
        assert.equal(response.status, 409);
        assert.match(text(response), /transition from active to saving is not allowed/);
        assertActiveWith(await s.show(image.id), data);
        assertFullDownload(await s.download(image.id), data);
      });

      it('lets exactly one of two concurrent uploads win and stores its bytes', async () => {
        const image = await s.create(RAW_BARE);
        const head = 64 * KiB;
        const framings: Headers[] = [{ 'content-length': String(MiB) }, {}];
        const contenders = framings.map((framing) => ({
          body: randomBytes(MiB),
          upload: s.openUpload(image.id, framing),
        }));
        await Promise.all(
          contenders.map(({ body, upload }) => upload.send(body.subarray(0, head))),
        );

        // Both are under way; the loser is answered while the winner still owes its body.
        const deadline = Date.now() + 5000;
        while (!contenders.some(({ upload }) => upload.answered) && Date.now() < deadline) {
          await sleep(5);
        }
        await sleep(50);
        const loser = contenders.find(({ upload }) => upload.answered);
        const winner = contenders.find(({ upload }) => !upload.answered);
        assert.ok(loser && winner, 'exactly one upload must be refused early');

        const refused = await loser.upload.answer();
        loser.upload.destroy();
        assert.equal(refused.status, 409, JSON.stringify(refused));
        assert.match(text(refused), /transition from (queued|saving) to saving is not allowed/);

        await winner.upload.send(winner.body.subarray(head));
        const accepted = await winner.upload.finish();
        assert.equal(accepted.status, 204, JSON.stringify(accepted));

        assertActiveWith(await s.show(image.id), winner.body);
        assertFullDownload(await s.download(image.id), winner.body);
        assert.deepEqual(await s.partials(), []);
      });

      it('records the volume size of an ISO image', async () => {
        const iso = buildIso(40);
        const image = await s.create({ disk_format: 'iso', container_format: 'bare' });
        const response = await s.upload(image.id, iso);
        assert.equal(response.status, 204, text(response));

        const shown = await s.show(image.id);
        assertActiveWith(shown, iso);
        assert.equal(shown.virtual_size, 40 * 2048);
      });

      it('removes the stored file when an active image is deleted', async () => {
        const image = await s.activeImage(randomBytes(2000));
        assert.ok((await stat(join(s.imagesDir, image.id))).isFile());

        const deleted = await s.call('DELETE', `/v2/images/${image.id}`, { headers: ALICE });
        assert.equal(deleted.status, 204);
        assert.ok(!(await readdir(s.imagesDir)).includes(image.id));
      });
    });

    describe('refused uploads leave the image queued and the store empty', () => {
      it('refuses an x-openstack-image-size that differs from the bytes with 400', async () => {
        const image = await s.create(RAW_BARE);
        for (const declared of ['100', '10']) {
          const response = await s.upload(image.id, randomBytes(50), {
            ...OCTETS,
            'x-openstack-image-size': declared,
          });
          assert.equal(response.status, 400, text(response));
          assert.match(text(response), /does not match the declared size/);
          await s.assertQueuedWithoutData(image.id);
        }
      });

      it('refuses a malformed x-openstack-image-size with 400', async () => {
        const image = await s.create(RAW_BARE);
        for (const declared of ['abc', '-1', '1.5', '']) {
          const response = await s.upload(image.id, randomBytes(50), {
            ...OCTETS,
            'x-openstack-image-size': declared,
          });
          assert.equal(response.status, 400, `${declared}: ${text(response)}`);
          assert.match(text(response), /Invalid or missing image size in request headers\./);
          await s.assertQueuedWithoutData(image.id);
        }
      });

      it('refuses data before disk_format and container_format are set with 400', async () => {
        const cases: [Record<string, unknown>, RegExp][] = [
          [{}, /Properties disk_format, container_format must be set prior to saving data\./],
          [{ disk_format: 'raw' }, /Property container_format must be set prior to saving/],
          [{ container_format: 'bare' }, /Property disk_format must be set prior to saving/],
        ];
        for (const [body, message] of cases) {
          const image = await s.create(body);
          const response = await s.upload(image.id, randomBytes(50));
          assert.equal(response.status, 400, text(response));
          assert.match(text(response), message);
          await s.assertQueuedWithoutData(image.id);
        }
      });

      it('refuses bodies that are not application/octet-stream with 415', async () => {
        const image = await s.create(RAW_BARE);
        const asJson = await s.upload(image.id, Buffer.from('{}'), {
          'content-type': 'application/json',
        });
        assert.equal(asJson.status, 415);
        assert.match(text(asJson), /media type application\/json is not supported/);
        await s.assertQueuedWithoutData(image.id);

        const none = await s.upload(image.id, randomBytes(50), {});
        assert.equal(none.status, 415, text(none));
        await s.assertQueuedWithoutData(image.id);

        const ok = await s.upload(image.id, randomBytes(50), {
          'content-type': 'Application/Octet-Stream; charset=binary',
        });
        assert.equal(ok.status, 204, text(ok));
      });
    });

    describe('image_size_cap', () => {
      const cap = MiB;
      let capped: Server;
      before(async () => {
        capped = await Server.start(database, { image_size_cap: cap });
      });
      after(() => capped?.close());

      /** The 413 an upload still sending gets at the cap; the image is left without data. */
      async function assertRefusedTooLarge(upload: OpenUpload, id: string): Promise<void> {
        const result = await upload.answer();
        upload.destroy();
        assert.equal(result.status, 413, JSON.stringify(result));
        assert.match(text(result), /The incoming image is too large/);
        await capped.assertQueuedWithoutData(id);
      }

      it('accepts an image of exactly the cap', async () => {
        const data = randomBytes(cap);
        const image = await capped.create(RAW_BARE);
        const response = await capped.upload(image.id, chunked(data, 100 * KiB));
        assert.equal(response.status, 204, text(response));
        assertActiveWith(await capped.show(image.id), data);
      });

      it('refuses a chunked body that grows past the cap with 413', async () => {
        const image = await capped.create(RAW_BARE);
        const upload = capped.openUpload(image.id);
        for (const piece of pieces(randomBytes(cap), 64 * KiB)) await upload.send(piece);
        assert.equal(upload.answered, false, 'answered before the cap was reached');
        await upload.send(randomBytes(KiB));

        await assertRefusedTooLarge(upload, image.id);
      });

      it('refuses a Content-Length above the cap with 413', async () => {
        const image = await capped.create(RAW_BARE);
        const upload = capped.openUpload(image.id, { 'content-length': String(cap + 1) });
        await upload.send(randomBytes(KiB));

        await assertRefusedTooLarge(upload, image.id);
      });

      it('refuses an x-openstack-image-size above the cap with 413', async () => {
        const image = await capped.create(RAW_BARE);
        const response = await capped.upload(image.id, randomBytes(100), {
          ...OCTETS,
          'x-openstack-image-size': String(cap + 1),
        });
        assert.equal(response.status, 413, text(response));
        await capped.assertQueuedWithoutData(image.id);
      });

      it('refuses staging past the cap with 413', async () => {
        const image = await capped.create({});
        const response = await capped.upload(
          image.id,
          chunked(randomBytes(cap + 1), 100 * KiB),
          OCTETS,
          ALICE,
          'stage',
        );
        assert.equal(response.status, 413, text(response));
        await capped.assertQueuedWithoutData(image.id);
      });
    });

    describe('disk images made by qemu-img', { skip: qemuSkip() }, () => {
      let dir = '';
      const path = (name: string) => join(dir, name);
      const read = (name: string) => readFile(path(name));

      before(() => {
        dir = mkdtempSync(join(tmpdir(), 'glimpse-image-data-'));
        buildQemuImages(dir);
      });
      after(() => rmSync(dir, { recursive: true, force: true }));

      /** Uploads `data` declared as `disk_format`/`container_format` and returns the response. */
      const put = async (data: Buffer, disk: string, container = 'bare') => {
        const image = await s.create({ disk_format: disk, container_format: container });
        return { image, response: await s.upload(image.id, data) };
      };

      for (const { name, diskFormat, qemuFormat } of QEMU_IMAGES) {
        it(`records qemu-img's virtual size for ${name} (${diskFormat})`, async () => {
          const data = await read(name);
          const expected = qemuVirtualSize(path(name), qemuFormat);
          const { image, response } = await put(data, diskFormat);
          assert.equal(response.status, 204, text(response));

          const shown = await s.show(image.id);
          assertActiveWith(shown, data);
          assert.equal(shown.virtual_size, expected);
          assertFullDownload(await s.download(image.id), data);
        });
      }

      it('inspects nothing when the container format is not bare', async () => {
        const qcow2 = await put(await read('disk.qcow2'), 'qcow2', 'ovf');
        assert.equal(qcow2.response.status, 204, text(qcow2.response));
        const shown = await s.show(qcow2.image.id);
        assert.equal(shown.status, 'active');
        assert.equal(shown.virtual_size, null);

        const mismatch = await put(await read('disk.raw'), 'qcow2', 'ovf');
        assert.equal(mismatch.response.status, 204, text(mismatch.response));
        assert.equal((await s.show(mismatch.image.id)).virtual_size, null);
      });

      it('accepts a safe qcow2 declared raw, sized by its byte count', async () => {
        const data = await read('disk.qcow2');
        const { image, response } = await put(data, 'raw');
        assert.equal(response.status, 204, text(response));
        const shown = await s.show(image.id);
        assertActiveWith(shown, data);
        assert.equal(shown.virtual_size, data.length);
      });

      const hostile: [string, () => Buffer | Promise<Buffer>, string, RegExp][] = [
        [
          'a qcow2 with a backing file',
          () => buildBackedQcow2(path('backed.qcow2'), path('disk.raw')),
          'qcow2',
          /backing_file/,
        ],
        [
          'a qcow2 with a backing file declared raw',
          () => buildBackedQcow2(path('backed-raw.qcow2'), path('disk.raw')),
          'raw',
          /backing_file/,
        ],
        [
          'a qcow2 with an external data file',
          () => buildExternalDataQcow2(path('external.qcow2'), path('external.bin')),
          'qcow2',
          /data_file/,
        ],
        [
          'a vmdk whose descriptor points at an outside extent',
          async () =>
            rewriteVmdkDescriptor(await read('sparse.vmdk'), (descriptor) =>
              descriptor.replace(/"sparse\.vmdk"/, '"/etc/passwd"'),
            ),
          'vmdk',
          /descriptor/,
        ],
        ['raw data declared qcow2', () => read('disk.raw'), 'qcow2', /does not match/],
      ];
      for (const [what, build, disk, detail] of hostile) {
        it(`refuses ${what} with 415 and keeps nothing`, async () => {
          const { image, response } = await put(await build(), disk);
          assert.equal(response.status, 415, text(response));
          assert.match(text(response), detail);
          await s.assertQueuedWithoutData(image.id);
        });
      }
    });

    describe('deactivate and reactivate', () => {
      it('blocks non-admin downloads of a deactivated image until reactivation', async () => {
        const data = randomBytes(3000);
        const image = await s.activeImage(data);

        assert.equal((await s.action(image.id, 'deactivate')).status, 204);
        assert.equal((await s.show(image.id)).status, 'deactivated');
        const refused = await s.download(image.id);
        assert.equal(refused.status, 403);
        assert.match(text(refused), /deactivated/);
        assertFullDownload(await s.download(image.id, {}, ADMIN), data);

        assert.equal((await s.action(image.id, 'reactivate')).status, 204);
        assert.equal((await s.show(image.id)).status, 'active');
        assertFullDownload(await s.download(image.id), data);
      });

      it('refuses to deactivate a queued image with 403', async () => {
        const image = await s.create(RAW_BARE);
        const response = await s.action(image.id, 'deactivate');
        assert.equal(response.status, 403);
        assert.match(text(response), /Not allowed to deactivate image in status 'queued'/);
        assert.equal((await s.show(image.id)).status, 'queued');
      });
    });

    describe('ranges', () => {
      const data = randomBytes(1000);
      let id = '';
      before(async () => {
        id = (await s.activeImage(data)).id;
      });

      const satisfied: [Headers, number, number][] = [
        [{ range: 'bytes=0-0' }, 0, 0],
        [{ range: 'bytes=5-' }, 5, 999],
        [{ range: 'bytes=-10' }, 990, 999],
        [{ range: 'bytes=-999999999' }, 0, 999],
        [{ range: 'bytes=0-5000' }, 0, 999],
        [{ range: 'bytes=998-999' }, 998, 999],
        [{ 'content-range': 'bytes 2-5/100' }, 2, 5],
      ];
      for (const [headers, first, last] of satisfied) {
        it(`answers ${JSON.stringify(headers)} with 206 and bytes ${first}-${last}`, async () => {
          const response = await s.download(id, headers);
          assert.equal(response.status, 206, text(response));
          assert.equal(response.headers['content-range'], `bytes ${first}-${last}/1000`);
          assert.equal(response.headers['content-length'], String(last - first + 1));
          assert.equal(response.headers['content-md5'], md5(data));
          assert.ok(response.body.equals(data.subarray(first, last + 1)), 'wrong bytes');
        });
      }

      it('refuses several ranges with 400', async () => {
        const response = await s.download(id, { range: 'bytes=0-1,5-6' });
        assert.equal(response.status, 400);
      });

      for (const range of ['bytes=9-2', 'items=0-1', 'bytes=1000-', 'bytes=-0', 'bytes=-']) {
        it(`refuses ${range} with 416`, async () => {
          const response = await s.download(id, { range });
          assert.equal(response.status, 416, text(response));
        });
      }
    });

    describe('interrupted and hostile uploads', () => {
      const head = (id: string, framing: string) =>
        `PUT /v2/images/${id}/file HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        `X-Project-Id: alice\r\nX-User-Id: alice-user\r\nX-Roles: member\r\n` +
        `Content-Type: application/octet-stream\r\n${framing}\r\n`;

      it('undoes an upload whose client disconnects midway', async () => {
        const image = await s.create(RAW_BARE);
        const errorsBefore = s.t.loggedErrors().length;
        const socket = net.connect(s.port, '127.0.0.1');
        socket.on('error', () => undefined);
        const received: Buffer[] = [];
        socket.on('data', (chunk: Buffer) => received.push(chunk));
        await new Promise((done) => socket.once('connect', done));

        try {
          socket.write(head(image.id, `Content-Length: ${4 * MiB}\r\n`));
          socket.write(randomBytes(1536 * KiB));
          // Wait until the first block is on disk, in the write's partial file.
          await until(async () => {
            const [partial] = await s.partials(image.id);
            if (partial === undefined) return false;
            return (await stat(join(s.imagesDir, '.partial', partial))).size >= MiB;
          }, 'a partial file holding the first MiB');
          assert.equal((await s.show(image.id)).status, 'saving');
        } finally {
          socket.destroy();
        }
        assert.equal(Buffer.concat(received).length, 0, 'answered before the body ended');

        await s.eventually(image.id, (shown) => shown.status === 'queued');
        await s.assertQueuedWithoutData(image.id);
        // A client going away is no fault of the server's, so it is not logged as an error.
        assert.deepEqual(s.t.loggedErrors().slice(errorsBefore), []);

        const data = randomBytes(MiB + 3);
        const retried = await s.upload(image.id, data);
        assert.equal(retried.status, 204, text(retried));
        assertFullDownload(await s.download(image.id), data);
      });

      const hostileBodies: [string, (id: string, socket: net.Socket) => Promise<void>][] = [
        [
          'a chunked body cut short before its last chunk',
          async (id, socket) => {
            socket.write(head(id, 'Transfer-Encoding: chunked\r\n'));
            for (let i = 0; i < 4; i++) {
              socket.write(`4000\r\n`);
              socket.write(randomBytes(0x4000));
              socket.write('\r\n');
              await sleep(10);
            }
            socket.end();
          },
        ],
        [
          'an invalid chunk-size line',
          async (id, socket) => {
            socket.write(head(id, 'Transfer-Encoding: chunked\r\n'));
            socket.write(`4000\r\n${'a'.repeat(0x4000)}\r\n`);
            await sleep(50);
            socket.write('zz-not-hex\r\nmore\r\n0\r\n\r\n');
          },
        ],
        [
          'duplicate Content-Length headers that differ',
          async (id, socket) => {
            socket.write(head(id, 'Content-Length: 5\r\nContent-Length: 6\r\n'));
            socket.write('hello!');
          },
        ],
        [
          'both Content-Length and chunked transfer encoding',
          async (id, socket) => {
            socket.write(head(id, 'Content-Length: 5\r\nTransfer-Encoding: chunked\r\n'));
            socket.write('5\r\nhello\r\n0\r\n\r\n');
          },
        ],
      ];
      for (const [what, send] of hostileBodies) {
        it(`answers ${what} with a 4xx or a closed connection`, async () => {
          const image = await s.create(RAW_BARE);
          const errorsBefore = s.t.loggedErrors().length;
          const seen = await s.rawExchange((socket) => send(image.id, socket));

          assert.equal(seen.hung, false, `no answer and no close: ${seen.text}`);
          if (seen.status !== null) {
            assert.ok(seen.status >= 400 && seen.status < 500, seen.text);
          }
          await s.eventually(image.id, (shown) => shown.status === 'queued');
          await s.assertQueuedWithoutData(image.id);
          assert.deepEqual(s.t.loggedErrors().slice(errorsBefore), []);
        });
      }
    });

    describe('corrupted data at rest', () => {
      for (const size of [3 * MiB + 5, 1000]) {
        it(`never serves a clean full body of corrupted data (${size} bytes)`, async () => {
          const data = randomBytes(size);
          const image = await s.activeImage(data);
          const intact = await s.rawDownload(image.id);
          assert.equal(intact.status, 200);
          assert.ok(intact.complete && intact.body.equals(data), 'intact data not served');

          const file = join(s.imagesDir, image.id);
          const other = Buffer.from(data);
          other[Math.floor(size / 2)] = (other[Math.floor(size / 2)] ?? 0) ^ 0xff;
          await writeFile(file, other);
          assert.equal((await stat(file)).size, size);

          const seen = await s.rawDownload(image.id);
          const clean = seen.status === 200 && seen.complete && seen.body.length === size;
          assert.ok(!clean, `corrupted data was served as a complete 200: ${seen.error}`);
        });
      }
    });

    describe('staging', () => {
      it('stages data once, then removes it with the image', async () => {
        const data = randomBytes(MiB + 11);
        const image = await s.create({});
        const staged = await s.upload(image.id, chunked(data, 99991), OCTETS, ALICE, 'stage');
        assert.equal(staged.status, 204, text(staged));

        const shown = await s.show(image.id);
        assert.equal(shown.status, 'uploading');
        assert.equal(shown.size, data.length);
        assert.equal(shown.checksum, null);
        const file = join(s.t.dataDir, 'staging', image.id);
        assert.ok((await readFile(file)).equals(data), 'staged bytes differ');
        assert.deepEqual(await s.partials(), []);

        const again = await s.upload(image.id, randomBytes(10), OCTETS, ALICE, 'stage');
        assert.equal(again.status, 409, text(again));
        const upload = await s.upload(image.id, randomBytes(10));
        assert.equal(upload.status, 409, text(upload));
        assert.ok((await readFile(file)).equals(data), 'a refused stage changed the data');
        assert.equal((await s.download(image.id)).status, 204);

        const deleted = await s.call('DELETE', `/v2/images/${image.id}`, { headers: ALICE });
        assert.equal(deleted.status, 204);
        const left = await readdir(join(s.t.dataDir, 'staging'));
        assert.ok(!left.includes(image.id), 'staged data outlived its image');
      });

      it('refuses staging by a reader with 403', async () => {
        const image = await s.create({});
        const response = await s.upload(image.id, randomBytes(10), OCTETS, ALICE_READER, 'stage');
        assert.equal(response.status, 403, text(response));
        await s.assertQueuedWithoutData(image.id);
      });
    });
  });
}
