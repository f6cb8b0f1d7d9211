/**
 * The behaviour every store driver must show, as one suite each driver's test file runs with
 * its own store: data read back as written (whole and in ranges), nothing visible before
 * commit, nothing left after abort, missing data reported as StoreNotFoundError, and an
 * unreachable or failing server reported as StoreUnavailableError or a failing stream.
 *
 * A driver provides what it can: a variant with small segments for drivers that split large
 * data, a store behind a TCP proxy to disturb its connections, a store whose server is down,
 * and for read-only drivers a way to put data where the store serves it.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';

import {
  StoreNotFoundError,
  StoreReadOnlyError,
  StoreUnavailableError,
  type ByteRange,
  type ImageStore,
} from '../../src/stores/store.js';
import type { TcpProxy } from '../support/tcp-proxy.js';

export interface ConformanceTarget {
  /** The store under test, initialised. */
  readonly store: ImageStore;
  /**
   * Read-only stores: puts data where `store` (the target's store or one of its variants)
   * serves it, and returns its location there.
   */
  seed?(imageId: string, data: Buffer, store: ImageStore): Promise<string>;
  /** Whether probe() asks a server (false for stores whose locations each name their own). */
  readonly probesServer?: boolean;
  /**
   * What writes of an image left behind besides its committed data: partial files, segments
   * of uncommitted or deleted writes. Empty when nothing is left.
   */
  leftovers?(imageId: string): Promise<readonly string[]>;
  /** A store of the same kind that splits data into segments of `segmentSize` bytes. */
  readonly segmented?: { readonly store: ImageStore; readonly segmentSize: number };
  /** A store of the same kind whose connections go through a proxy the tests disturb. */
  readonly proxied?: {
    readonly store: ImageStore;
    readonly proxy: Pick<TcpProxy, 'cutAll' | 'refuse' | 'cutAfterBytes'>;
  };
  /** A store of the same kind whose server does not answer at all. */
  readonly unreachable?: ImageStore;
  /** Removes what the suite left and closes the stores. */
  close(): Promise<void>;
}

export interface ConformanceOptions {
  /** Why the suite cannot run here, or null/undefined when it can. */
  readonly skip?: string | null;
}

const KIB = 1024;
const MIB = 1024 * KIB;
/** Sizes of the round-trip test: empty, tiny, odd, and several MiB in uneven chunks. */
const SIZES = [0, 1, 1000, 3 * MIB + 17];

export function describeStoreConformance(
  name: string,
  setup: () => Promise<ConformanceTarget>,
  options: ConformanceOptions = {},
): void {
  describe(`${name} store conformance`, { skip: options.skip ?? false }, () => {
    let target: ConformanceTarget;
    const written: Array<{ store: ImageStore; location: string }> = [];

    before(async () => {
      target = await setup();
    });

    after(async () => {
      if (!target) return;
      for (const { store, location } of written) {
        if (!store.readOnly) await store.delete(location).catch(() => undefined);
      }
      await target.close();
    });

    /** Stores data with a writer (or the seed of a read-only store) and remembers it. */
    async function put(data: Buffer, store = target.store, id = randomUUID()): Promise<string> {
      const location = store.readOnly
        ? await seedOf(target)(id, data, store)
        : await writeAll(store, id, data);
      written.push({ store, location });
      return location;
    }

    function writable(t: TestContext): boolean {
      if (target.store.readOnly) t.skip('read-only store');
      return !target.store.readOnly;
    }

    it('reads back what was written, for sizes from 0 bytes to several MiB', async () => {
      for (const size of SIZES) {
        const data = randomBytes(size);
        const id = randomUUID();
        const location = await put(data, target.store, id);
        assert.ok(target.store.owns(location), `owns ${location}`);
        if (!target.store.readOnly) assert.equal(location, target.store.locationOf(id));
        assert.equal(await target.store.sizeOf(location), size);
        assert.equal(sha256(await readAll(await target.store.read(location))), sha256(data));
      }
    });

    it('owns its own locations and no others', async () => {
      const location = await put(randomBytes(10));
      assert.equal(target.store.owns(location), true);
      const others = [
        'file:///somewhere/else/00000000-0000-0000-0000-000000000000',
        'http://198.51.100.1/images/00000000-0000-0000-0000-000000000000',
        'swift+http://198.51.100.1:8080/v1/AUTH_x/c/00000000-0000-0000-0000-000000000000',
        's3+http://198.51.100.1/bucket/00000000-0000-0000-0000-000000000000',
        'not a url',
        '',
      ];
      // An http store serves every web URL: only the other kinds are foreign to it.
      const foreign =
        target.store.type === 'http' ? others.filter((url) => !/^https?:/.test(url)) : others;
      for (const other of foreign) assert.equal(target.store.owns(other), false, other);
    });

    it('reads byte ranges: first byte, middle, last byte, everything', async () => {
      const data = randomBytes(100 * KIB + 3);
      const location = await put(data);
      const last = data.length - 1;
      for (const range of [
        { start: 0, end: 0 },
        { start: 4321, end: 65_432 },
        { start: last, end: last },
        { start: 0, end: last },
      ]) {
        await assertRange(target.store, location, data, range);
      }
    });

    it('reports missing data as StoreNotFoundError', async () => {
      const location = await put(randomBytes(10));
      const missing = location.replace(/[0-9a-f-]{36}$/, randomUUID());
      await assert.rejects(target.store.read(missing), StoreNotFoundError);
      await assert.rejects(target.store.sizeOf(missing), StoreNotFoundError);
    });

    it('deletes data, and deleting what is gone is not an error', async (t) => {
      if (!writable(t)) return;
      const location = await put(randomBytes(2000));
      await target.store.delete(location);
      await assert.rejects(target.store.read(location), StoreNotFoundError);
      await assert.rejects(target.store.sizeOf(location), StoreNotFoundError);
      await target.store.delete(location);
      await target.store.delete(target.store.locationOf(randomUUID()));
    });

    it('shows nothing under the location before commit', async (t) => {
      if (!writable(t)) return;
      const id = randomUUID();
      const data = randomBytes(300 * KIB);
      const writer = await target.store.createWriter(id);
      await writer.write(data);
      await assert.rejects(target.store.read(target.store.locationOf(id)), StoreNotFoundError);
      const location = await writer.commit();
      written.push({ store: target.store, location });
      assert.equal(sha256(await readAll(await target.store.read(location))), sha256(data));
    });

    it('leaves nothing behind after abort, at any point', async (t) => {
      if (!writable(t)) return;
      for (const size of [0, 10, 300 * KIB]) {
        const id = randomUUID();
        const writer = await target.store.createWriter(id);
        if (size > 0) await writer.write(randomBytes(size));
        await writer.abort();
        await writer.abort();
        await assert.rejects(target.store.read(target.store.locationOf(id)), StoreNotFoundError);
        assert.deepEqual(await leftoversOf(target, id), []);
      }
    });

    it('takes data whose size is declared up front, showing it only after commit', async (t) => {
      if (!writable(t)) return;
      const stores = [target.store, ...(target.segmented ? [target.segmented.store] : [])];
      const segment = target.segmented?.segmentSize ?? 300 * KIB;
      for (const store of stores) {
        for (const size of [1, 1000, segment - 1, segment, Math.floor(2.5 * segment)]) {
          const id = randomUUID();
          const data = randomBytes(size);
          const writer = await store.createWriter(id, size);
          await writer.write(data);
          await assert.rejects(store.read(store.locationOf(id)), StoreNotFoundError);
          const location = await writer.commit();
          written.push({ store, location });
          assert.equal(await store.sizeOf(location), size, `${store.id}: ${size} bytes`);
          assert.equal(sha256(await readAll(await store.read(location))), sha256(data));
        }
      }
    });

    it('leaves nothing behind after abort of a write whose size was declared', async (t) => {
      if (!writable(t)) return;
      for (const [declared, sent] of [
        [10, 10],
        [300 * KIB, 100 * KIB],
      ] as const) {
        const id = randomUUID();
        const writer = await target.store.createWriter(id, declared);
        await writer.write(randomBytes(sent));
        await writer.abort();
        await assert.rejects(target.store.read(target.store.locationOf(id)), StoreNotFoundError);
        assert.deepEqual(await leftoversOf(target, id), []);
      }
    });

    it('refuses writers when read-only, and deleting only forgets the data', async (t) => {
      if (!target.store.readOnly) return t.skip('writable store');
      const data = randomBytes(10);
      const location = await put(data);
      await assert.rejects(target.store.createWriter(randomUUID()), StoreReadOnlyError);
      await target.store.delete(location);
      assert.ok((await readAll(await target.store.read(location))).equals(data));
    });

    it('probes successfully', async () => {
      await target.store.probe();
      assert.equal(typeof target.store.properties(), 'object');
    });

    describe('large data in segments', () => {
      it('reads back data of 2.5 segments, also in ranges across boundaries', async (t) => {
        const segmented = target.segmented;
        if (!segmented) return t.skip('the driver does not split data');
        const { store, segmentSize: s } = segmented;
        const data = randomBytes(Math.floor(2.5 * s));
        const location = await put(data, store);
        assert.equal(await store.sizeOf(location), data.length);
        assert.equal(sha256(await readAll(await store.read(location))), sha256(data));
        for (const range of [
          { start: s - 1, end: s },
          { start: s - 10, end: 2 * s + 10 },
          { start: 2 * s, end: data.length - 1 },
          { start: s + 5, end: s + 5 },
        ]) {
          await assertRange(store, location, data, range);
        }
      });

      it('handles data of exactly one and two segments', async (t) => {
        const segmented = target.segmented;
        if (!segmented) return t.skip('the driver does not split data');
        for (const size of [segmented.segmentSize, 2 * segmented.segmentSize]) {
          const data = randomBytes(size);
          const location = await put(data, segmented.store);
          const read = await readAll(await segmented.store.read(location));
          assert.equal(sha256(read), sha256(data), `${size} bytes`);
        }
      });

      it('deletes every segment with the data', async (t) => {
        const segmented = target.segmented;
        if (!segmented || target.store.readOnly) return t.skip('the driver does not split data');
        const id = randomUUID();
        const location = await put(
          randomBytes(3 * segmented.segmentSize + 1),
          segmented.store,
          id,
        );
        await segmented.store.delete(location);
        await assert.rejects(segmented.store.read(location), StoreNotFoundError);
        assert.deepEqual(await leftoversOf(target, id), []);
      });

      it('leaves no segment behind after abort', async (t) => {
        const segmented = target.segmented;
        if (!segmented || target.store.readOnly) return t.skip('the driver does not split data');
        const id = randomUUID();
        const writer = await segmented.store.createWriter(id);
        await writer.write(randomBytes(Math.floor(2.5 * segmented.segmentSize)));
        await writer.abort();
        await assert.rejects(
          segmented.store.read(segmented.store.locationOf(id)),
          StoreNotFoundError,
        );
        assert.deepEqual(await leftoversOf(target, id), []);
      });
    });

    describe('writes whose process died', () => {
      it('discardUncommitted removes what an abandoned write left', async (t) => {
        if (!writable(t)) return;
        const store = target.segmented?.store ?? target.store;
        const size = target.segmented ? Math.floor(1.5 * target.segmented.segmentSize) : 1000;
        const id = randomUUID();
        const abandoned = await store.createWriter(id);
        await abandoned.write(randomBytes(size));
        // Drivers may send what was written in the background: wait until it shows.
        if (target.leftovers)
          await eventually(async () => (await leftoversOf(target, id)).length > 0);

        await store.discardUncommitted(id);
        assert.deepEqual(await leftoversOf(target, id), []);
        await assert.rejects(store.read(store.locationOf(id)), StoreNotFoundError);
        // Only now may the writer go: in a dead process it would never have ended.
        await abandoned.abort();
      });

      it('discardUncommitted keeps committed data of the image', async (t) => {
        if (!writable(t)) return;
        const store = target.segmented?.store ?? target.store;
        const data = randomBytes(target.segmented ? 3 * target.segmented.segmentSize : 5000);
        const id = randomUUID();
        const location = await put(data, store, id);
        const abandoned = await store.createWriter(id);
        await abandoned.write(randomBytes(100));

        await store.discardUncommitted(id);
        assert.equal(sha256(await readAll(await store.read(location))), sha256(data));
        await abandoned.abort();
        await store.discardUncommitted(randomUUID());
      });
    });

    describe('failures of the server', () => {
      it('errors a read whose connection dies midway', async (t) => {
        const proxied = target.proxied;
        if (!proxied) return t.skip('no proxied variant');
        // More than loopback sockets buffer, so the second cut lands before the data is in.
        const data = randomBytes(24 * MIB);
        const location = await put(data, proxied.store);
        proxied.proxy.cutAfterBytes(512 * KIB);
        try {
          await assert.rejects(readAll(await proxied.store.read(location)));
        } finally {
          proxied.proxy.cutAfterBytes(null);
        }
        // A cut between the headers and the end of the data, too.
        const stream = await proxied.store.read(location);
        await new Promise((resolve) => stream.once('readable', resolve));
        proxied.proxy.cutAll();
        await assert.rejects(readAll(stream));
        // The store recovers once the connection can be made again.
        assert.equal(sha256(await readAll(await proxied.store.read(location))), sha256(data));
      });

      it('reports a server that refuses connections as StoreUnavailableError', async (t) => {
        const proxied = target.proxied;
        if (!proxied) return t.skip('no proxied variant');
        const location = await put(randomBytes(1000), proxied.store);
        proxied.proxy.refuse(true);
        proxied.proxy.cutAll();
        try {
          if (target.probesServer !== false) {
            await assert.rejects(proxied.store.probe(), StoreUnavailableError);
          }
          await assert.rejects(proxied.store.read(location), StoreUnavailableError);
          await assert.rejects(proxied.store.sizeOf(location), StoreUnavailableError);
          if (!proxied.store.readOnly) {
            await assert.rejects(
              writeAll(proxied.store, randomUUID(), randomBytes(1000)),
              StoreUnavailableError,
            );
          }
        } finally {
          proxied.proxy.refuse(false);
        }
        await proxied.store.probe();
      });

      it('reports a store whose server is down as StoreUnavailableError', async (t) => {
        const down = target.unreachable;
        if (!down) return t.skip('no unreachable variant');
        await assert.rejects(down.probe(), StoreUnavailableError);
        if (!down.readOnly) {
          await assert.rejects(
            writeAll(down, randomUUID(), randomBytes(10)),
            StoreUnavailableError,
          );
        }
      });
    });
  });
}

/** Writes data in uneven chunks and commits; aborts on failure. */
export async function writeAll(store: ImageStore, id: string, data: Buffer): Promise<string> {
  const writer = await store.createWriter(id);
  try {
    let offset = 0;
    for (let step = 1; offset < data.length; step++) {
      const size = (step % 7) * 37 * KIB + 1;
      await writer.write(data.subarray(offset, offset + size));
      offset += size;
    }
    return await writer.commit();
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function assertRange(
  store: ImageStore,
  location: string,
  data: Buffer,
  range: ByteRange,
): Promise<void> {
  const read = await readAll(await store.read(location, range));
  const expected = data.subarray(range.start, range.end + 1);
  assert.equal(read.length, expected.length, `length of ${range.start}-${range.end}`);
  assert.ok(read.equals(expected), `bytes ${range.start}-${range.end}`);
}

function seedOf(
  target: ConformanceTarget,
): (id: string, data: Buffer, store: ImageStore) => Promise<string> {
  const seed = target.seed;
  if (!seed) throw new Error('a read-only store needs a seed function to be tested');
  return (id, data, store) => seed.call(target, id, data, store);
}

/** Resolves once `condition` holds, checking for up to 10 s. */
async function eventually(condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('the condition did not come true within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function leftoversOf(target: ConformanceTarget, id: string): Promise<readonly string[]> {
  return target.leftovers ? target.leftovers(id) : [];
}
