/**
 * A write of one image into Swift. As upstream's driver does, data whose size is declared and
 * below large_object_size goes in a single PUT to <container>/<image id>; that PUT announces
 * the size, and its last byte is held back until commit, since Swift stores the object as
 * soon as all the announced bytes are in.
 *
 * Data of an unknown or larger size goes into segments first, streamed one after the other:
 *
 *   <container>-segments/<image id>/<nonce>/00000, 00001, ...   each large_object_chunk_size
 *
 * Commit makes the image visible under <container>/<image id>, which no reader sees before:
 * - no data: an empty object is written;
 * - one segment, no larger than large_object_size: Swift copies it to the final name (a
 *   server-side copy; no data passes through Glimpse again) and the segment is deleted;
 * - otherwise: a static large object manifest listing the segments, each with the MD5 and size
 *   computed while it was sent, so Swift refuses a manifest whose segments are not the data.
 *
 * Abort cancels the segment being sent (Swift keeps nothing of an unfinished PUT) and deletes
 * the finished ones. Memory stays constant: a segment is a streamed PUT whose body buffers at
 * most BODY_BUFFER bytes; write() waits while it is full.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { PassThrough } from 'node:stream';

import type { Dispatcher } from 'undici';

import { StoreUnavailableError, type StoreWriter } from '../store.js';
import { headerOf, objectPath, type SwiftClient } from './swift-client.js';

/** What a writer writes to, and in what sizes. */
export interface SwiftWriteTarget {
  readonly client: SwiftClient;
  /** The size the data was declared to have; null when unknown. */
  readonly expectedSize: number | null;
  readonly container: string;
  readonly segmentContainer: string;
  /** The object name under `container` (the image id). */
  readonly objectName: string;
  /** The location commit returns. */
  readonly location: string;
  readonly largeObjectSize: number;
  readonly chunkSize: number;
  readonly requestTimeoutMs: number;
}

/** Swift's default limit on the segments of one manifest (max_manifest_segments). */
export const MAX_SEGMENTS = 1000;
/** Bytes a segment's body holds before write() waits for Swift to take them. */
const BODY_BUFFER = 256 * 1024;
/** A server-side copy or manifest check is given time in proportion to its work. */
const COPY_BYTES_PER_MS = 10 * 1024;
const MANIFEST_MS_PER_SEGMENT = 100;
/** Deletes of leftover segments in flight at once. */
const DELETE_CONCURRENCY = 4;

interface StoredSegment {
  readonly name: string;
  readonly etag: string;
  readonly size: number;
}

export class SwiftWriter implements StoreWriter {
  readonly #target: SwiftWriteTarget;
  /** Segment names start with this; it is unique to this write. */
  readonly #prefix: string;
  readonly #stored: StoredSegment[] = [];
  /** Whether the data goes in one PUT to the final name (see above). */
  readonly #whole: boolean;
  #upload: ObjectUpload | null = null;
  /** The last byte of a whole object, sent by commit. */
  #held: Buffer | null = null;
  #state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  #failure: Error | null = null;
  /** Whether commit got as far as writing the final name, which abort must then remove. */
  #publishing = false;

  constructor(target: SwiftWriteTarget) {
    this.#target = target;
    this.#prefix = `${target.objectName}/${randomBytes(6).toString('hex')}/`;
    const size = target.expectedSize;
    this.#whole = size !== null && size > 0 && size < target.largeObjectSize;
  }

  async write(chunk: Buffer): Promise<void> {
    this.#checkOpen();
    try {
      if (this.#whole) await this.#writeWhole(chunk);
      else await this.#writeSegments(chunk);
    } catch (error) {
      this.#failure = error as Error;
      throw error;
    }
  }

  async commit(): Promise<string> {
    this.#checkOpen();
    this.#state = 'committing';
    try {
      if (this.#whole) {
        await this.#commitWhole();
      } else {
        if (this.#upload) await this.#finishSegment(this.#upload);
        await this.#publish();
      }
    } catch (error) {
      this.#failure = error as Error;
      throw error;
    }
    this.#state = 'committed';
    return this.#target.location;
  }

  /** Best effort: what cannot be deleted now is left for discardUncommitted. */
  async abort(): Promise<void> {
    if (this.#state === 'committed' || this.#state === 'aborted') return;
    this.#state = 'aborted';
    const names = this.#stored.map((segment) => segment.name);
    const upload = this.#upload;
    this.#upload = null;
    if (upload) {
      upload.cancel();
      await upload.settled();
      // Swift may have finished storing it just before the cancel arrived.
      if (!this.#whole) names.push(upload.name);
    }
    const { client, container, segmentContainer, objectName } = this.#target;
    if (this.#publishing) await deleteObject(client, container, objectName).catch(() => undefined);
    await deleteObjects(client, segmentContainer, names).catch(() => undefined);
  }

  #checkOpen(): void {
    if (this.#failure) throw this.#failure;
    if (this.#state !== 'open') throw new Error(`the write of ${this.#target.location} is over`);
  }

  async #writeWhole(chunk: Buffer): Promise<void> {
    const { client, container, objectName } = this.#target;
    const expected = this.#target.expectedSize ?? 0;
    this.#upload ??= new ObjectUpload(client, container, objectName, {
      what: `writing ${container}/${objectName}`,
      contentLength: expected,
    });
    const total = this.#upload.size + (this.#held?.length ?? 0) + chunk.length;
    if (total > expected) {
      throw new Error(`${this.#target.location}: more than the ${expected} bytes declared`);
    }
    // The byte that completes the object waits for commit.
    const piece = total === expected ? chunk.subarray(0, -1) : chunk;
    if (total === expected && chunk.length > 0) this.#held = chunk.subarray(-1);
    await this.#upload.write(piece);
  }

  async #commitWhole(): Promise<void> {
    const upload = this.#upload;
    const held = this.#held;
    if (!upload || !held) {
      throw new Error(
        `${this.#target.location}: ${upload?.size ?? 0} of the ` +
          `${this.#target.expectedSize} bytes declared were written`,
      );
    }
    // From here Swift may store the object, which abort must then remove.
    this.#publishing = true;
    await upload.write(held);
    await upload.finish();
    this.#upload = null;
  }

  async #writeSegments(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const upload = this.#upload ?? this.#startSegment();
      const piece = chunk.subarray(offset, offset + this.#target.chunkSize - upload.size);
      await upload.write(piece);
      offset += piece.length;
      if (upload.size === this.#target.chunkSize) await this.#finishSegment(upload);
    }
  }

  #startSegment(): ObjectUpload {
    const { client, segmentContainer, chunkSize } = this.#target;
    if (this.#stored.length >= MAX_SEGMENTS) {
      throw new StoreUnavailableError(
        `Swift store ${client.storeId}: ${this.#target.objectName} needs more than ` +
          `${MAX_SEGMENTS} segments of ${chunkSize} bytes; raise ` +
          'swift_store_large_object_chunk_size',
      );
    }
    const name = `${this.#prefix}${String(this.#stored.length).padStart(5, '0')}`;
    this.#upload = new ObjectUpload(client, segmentContainer, name, {
      what: `writing segment ${segmentContainer}/${name}`,
    });
    return this.#upload;
  }

  async #finishSegment(upload: ObjectUpload): Promise<void> {
    this.#stored.push(await upload.finish());
    this.#upload = null;
  }

  async #publish(): Promise<void> {
    const { client, segmentContainer, largeObjectSize } = this.#target;
    const [first, ...more] = this.#stored;
    this.#publishing = true;
    if (!first) {
      await this.#putFinal({ body: '' }, 'writing an empty object');
    } else if (more.length === 0 && first.size <= largeObjectSize) {
      const copyFrom = objectPath(segmentContainer, first.name);
      const headersTimeoutMs = this.#target.requestTimeoutMs + first.size / COPY_BYTES_PER_MS;
      await this.#putFinal({ headers: { 'x-copy-from': copyFrom }, headersTimeoutMs }, 'copying');
      // The image is complete; a segment left behind only costs space.
      await deleteObjects(client, segmentContainer, [first.name]).catch(() => undefined);
    } else {
      const manifest = this.#stored.map((segment) => ({
        path: objectPath(segmentContainer, segment.name),
        etag: segment.etag,
        size_bytes: segment.size,
      }));
      const headersTimeoutMs =
        this.#target.requestTimeoutMs + manifest.length * MANIFEST_MS_PER_SEGMENT;
      await this.#putFinal(
        {
          query: '?multipart-manifest=put',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(manifest),
          headersTimeoutMs,
        },
        `writing the manifest of ${manifest.length} segments`,
      );
    }
  }

  async #putFinal(
    request: {
      query?: string;
      headers?: Record<string, string>;
      body?: string;
      headersTimeoutMs?: number;
    },
    action: string,
  ): Promise<void> {
    const { client, container, objectName } = this.#target;
    const what = `${action} to ${container}/${objectName}`;
    const response = await client.request({
      method: 'PUT',
      path: objectPath(container, objectName) + (request.query ?? ''),
      what,
      headers: request.headers,
      body: request.body,
      headersTimeoutMs: request.headersTimeoutMs,
    });
    if (response.statusCode !== 201) throw await client.statusError(response, what);
    await response.body.dump();
  }
}

/**
 * One object (a segment, or a whole small image) being sent: a PUT whose body is fed by
 * write(). Swift answers once the body ends; an answer before that (an error, a timeout of
 * Swift's) ends the upload early.
 */
class ObjectUpload {
  readonly name: string;
  size = 0;
  readonly #client: SwiftClient;
  readonly #what: string;
  readonly #body = new PassThrough({ highWaterMark: BODY_BUFFER });
  readonly #hash: Hash = createHash('md5');
  readonly #abort = new AbortController();
  readonly #answer: Promise<Dispatcher.ResponseData>;
  #response: Dispatcher.ResponseData | null = null;
  #error: Error | null = null;
  /** Wakes a write waiting for room when the answer comes instead. */
  #wake: (() => void) | null = null;

  /** `contentLength`: the size announced to Swift, when known (else the body is chunked). */
  constructor(
    client: SwiftClient,
    container: string,
    name: string,
    options: { what: string; contentLength?: number },
  ) {
    this.name = name;
    this.#client = client;
    this.#what = options.what;
    // undici destroys the body with the request's error; the error is reported by the answer.
    this.#body.on('error', () => undefined);
    const length = options.contentLength;
    this.#answer = client.request({
      method: 'PUT',
      path: objectPath(container, name),
      what: this.#what,
      headers: {
        'content-type': 'application/octet-stream',
        ...(length === undefined ? {} : { 'content-length': String(length) }),
      },
      body: this.#body,
      signal: this.#abort.signal,
    });
    this.#answer.then(
      (response) => {
        this.#response = response;
        this.#wake?.();
      },
      (error: Error) => {
        this.#error = error;
        this.#wake?.();
      },
    );
  }

  async write(piece: Buffer): Promise<void> {
    this.#throwIfAnswered();
    this.#hash.update(piece);
    this.size += piece.length;
    if (this.#body.write(piece)) return;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#body.once('drain', resolve);
    });
    this.#wake = null;
    this.#throwIfAnswered();
  }

  /** Ends the body and checks that Swift stored exactly what was sent. */
  async finish(): Promise<StoredSegment> {
    this.#throwIfAnswered();
    this.#body.end();
    const response = await this.#answer;
    if (response.statusCode !== 201) throw await this.#client.statusError(response, this.#what);
    await response.body.dump();
    const md5 = this.#hash.digest('hex');
    const etag = (headerOf(response, 'etag') ?? '').replace(/"/g, '').toLowerCase();
    if (etag !== md5) {
      throw this.#client.unavailable(
        `${this.#what}: Swift stored MD5 ${etag || 'none'}, but the data sent has ${md5}`,
      );
    }
    return { name: this.name, etag: md5, size: this.size };
  }

  cancel(): void {
    this.#abort.abort();
    this.#body.destroy();
  }

  /** Resolves once the request is over, whichever way it ended. */
  async settled(): Promise<void> {
    const response = await this.#answer.catch(() => null);
    await response?.body.dump().catch(() => undefined);
  }

  #throwIfAnswered(): void {
    if (this.#error) throw this.#error;
    const response = this.#response;
    if (response) {
      this.cancel();
      throw this.#client.unavailable(
        `${this.#what}: Swift answered ${response.statusCode} before the data was complete`,
      );
    }
  }
}

export async function deleteObject(
  client: SwiftClient,
  container: string,
  name: string,
  query = '',
): Promise<void> {
  const what = `deleting ${container}/${name}`;
  const response = await client.request({
    method: 'DELETE',
    path: objectPath(container, name) + query,
    what,
  });
  if (response.statusCode === 404 || response.statusCode < 300) {
    await response.body.dump();
    return;
  }
  throw await client.statusError(response, what);
}

/** Deletes objects of one container, a few at a time; missing ones are not an error. */
export async function deleteObjects(
  client: SwiftClient,
  container: string,
  names: readonly string[],
): Promise<void> {
  const queue = [...names];
  const worker = async (): Promise<void> => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      await deleteObject(client, container, name);
    }
  };
  await Promise.all(Array.from({ length: DELETE_CONCURRENCY }, worker));
}
