/**
 * A store in an OpenStack Swift container, over Swift's native API.
 *
 *   <container>/<image id>                           committed image data: a plain object, or
 *                                                    a static large object (SLO) manifest
 *   <container>-segments/<image id>/<nonce>/<00000>  segments, written by SwiftWriter
 *
 * Locations are `swift+http://<storage URL without its scheme>/<container>/<image id>`
 * (`swift+https` for an https storage URL), e.g.
 * `swift+http://127.0.0.1:8080/v1/AUTH_test/glance/<id>`. They carry no credentials: the
 * store's own settings log in. The storage URL is learnt at the first login, so owns() and
 * locationOf() know this store's locations once init() has run. Upstream's single-tenant form
 * `swift+http://[user:key@]<auth address>/<container>/<id>` is recognised too, its
 * credentials ignored.
 *
 * Every request is bounded in time (see SwiftClient). A read checks that it got as many bytes
 * as Swift announced, so a connection dropped midway errors the stream instead of ending it.
 */
import { Transform, type Readable } from 'node:stream';

import type { Dispatcher } from 'undici';

import {
  StoreNotFoundError,
  type ByteRange,
  type ImageStore,
  type StoreWriter,
} from '../store.js';
import { headerOf, objectPath, SwiftClient, DEFAULT_REQUEST_TIMEOUT_MS } from './swift-client.js';
import type { SwiftStoreOptions } from './swift-config.js';
import { deleteObject, deleteObjects, SwiftWriter } from './swift-writer.js';

export { SWIFT_STORE_SETTINGS, type SwiftStoreOptions } from './swift-config.js';

const IMAGE_ID = /^[0-9a-fA-F-]{36}$/;
const SEGMENTS_SUFFIX = '-segments';
/** Location schemes and the transport each stands for (upstream's bare `swift` is https). */
const TRANSPORTS: Readonly<Record<string, string>> = {
  'swift+http:': 'http:',
  'swift+https:': 'https:',
  'swift:': 'https:',
};

interface ManifestEntry {
  readonly name?: unknown;
}

interface ManifestDeleteResult {
  readonly 'Response Status'?: unknown;
  readonly Errors?: unknown;
}

export class SwiftStore implements ImageStore {
  readonly id: string;
  readonly type = 'swift';
  readonly scheme: string;
  readonly readOnly = false;
  readonly #options: SwiftStoreOptions;
  readonly #client: SwiftClient;
  readonly #segments: string;
  #containers: Promise<void> | null = null;

  constructor(options: SwiftStoreOptions) {
    checkOptions(options);
    this.id = options.id;
    this.#options = options;
    this.#client = new SwiftClient(options);
    this.#segments = `${options.container}${SEGMENTS_SUFFIX}`;
    this.scheme = new URL(options.authUrl).protocol === 'https:' ? 'swift+https' : 'swift+http';
  }

  /** Logs in (which tells the storage URL) and creates the containers when configured to. */
  async init(): Promise<void> {
    await this.#client.session();
    if (this.#options.createContainerOnPut) await this.#ensureContainers();
  }

  async close(): Promise<void> {
    await this.#client.close();
  }

  owns(location: string): boolean {
    return this.#objectNameOf(location) !== null;
  }

  /** As upstream's GET /v2/info/stores/detail shows them: sizes in bytes. */
  properties(): Record<string, unknown> {
    return {
      container: this.#options.container,
      large_object_size: this.#options.largeObjectSize,
      large_object_chunk_size: this.#options.largeObjectChunkSize,
    };
  }

  /** Swift answers for the container (or it is missing but would be created on write). */
  async probe(): Promise<void> {
    const what = `checking container ${this.#options.container}`;
    const response = await this.#client.request({
      method: 'HEAD',
      path: objectPath(this.#options.container),
      what,
    });
    const missingButCreated = response.statusCode === 404 && this.#options.createContainerOnPut;
    if (response.statusCode >= 300 && !missingButCreated) {
      throw await this.#client.statusError(response, what);
    }
    await response.body.dump();
  }

  async sizeOf(location: string): Promise<number> {
    const name = await this.#nameOfLocation(location);
    const what = `checking ${this.#options.container}/${name}`;
    const response = await this.#head(name, what);
    const size = Number(headerOf(response, 'content-length'));
    if (!Number.isSafeInteger(size) || size < 0) {
      throw this.#client.unavailable(`${what}: Swift gave no size`);
    }
    return size;
  }

  locationOf(imageId: string): string {
    checkImageId(imageId);
    const storageUrl = this.#client.storageUrl;
    if (storageUrl === null) {
      throw this.#client.unavailable('the store has not logged in to Swift yet');
    }
    return `swift+${storageUrl}/${encodeURIComponent(this.#options.container)}/${imageId}`;
  }

  async createWriter(imageId: string, expectedSize: number | null = null): Promise<StoreWriter> {
    checkImageId(imageId);
    await this.#client.session();
    if (this.#options.createContainerOnPut) await this.#ensureContainers();
    return new SwiftWriter({
      client: this.#client,
      expectedSize,
      container: this.#options.container,
      segmentContainer: this.#segments,
      objectName: imageId,
      location: this.locationOf(imageId),
      largeObjectSize: this.#options.largeObjectSize,
      chunkSize: this.#options.largeObjectChunkSize,
      requestTimeoutMs: this.#options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    });
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const name = await this.#nameOfLocation(location);
    const what = `reading ${this.#options.container}/${name}`;
    const response = await this.#client.request({
      method: 'GET',
      path: objectPath(this.#options.container, name),
      what,
      headers: range ? { range: `bytes=${range.start}-${range.end}` } : {},
    });
    const expected = range ? 206 : 200;
    if (response.statusCode !== expected) {
      if (response.statusCode === 200 || response.statusCode === 206) {
        await response.body.dump();
        throw new Error(`Swift store ${this.id}: ${what}: Swift answered ${response.statusCode}`);
      }
      throw await this.#client.statusError(response, what);
    }
    const length = Number(headerOf(response, 'content-length'));
    return checkedLength(
      response.body,
      Number.isSafeInteger(length) ? length : null,
      (seen, cause) =>
        this.#client.unavailable(
          `${what}: the data ended after ${seen} of ${length} bytes`,
          cause,
        ),
    );
  }

  /** A manifest is deleted with its segments; what is already gone is not an error. */
  async delete(location: string): Promise<void> {
    const name = await this.#nameOfLocation(location);
    const what = `deleting ${this.#options.container}/${name}`;
    let manifest: boolean;
    try {
      manifest = isManifest(await this.#head(name, what));
    } catch (error) {
      if (error instanceof StoreNotFoundError) return;
      throw error;
    }
    if (!manifest) {
      await deleteObject(this.#client, this.#options.container, name);
      return;
    }
    await this.#deleteManifest(name, what);
  }

  /**
   * Deletes the segments of this image's writes that never became a committed object; those
   * of the manifest at the image's name, if there is one, stay.
   */
  async discardUncommitted(imageId: string): Promise<void> {
    checkImageId(imageId);
    const names = await this.#listSegments(`${imageId}/`);
    if (names.length === 0) return;
    const kept = await this.#committedSegments(imageId);
    const leftovers = names.filter((name) => !kept.has(name));
    await deleteObjects(this.#client, this.#segments, leftovers);
  }

  #ensureContainers(): Promise<void> {
    this.#containers ??= Promise.all([
      this.#createContainer(this.#options.container),
      this.#createContainer(this.#segments),
    ]).then(
      () => undefined,
      (error: unknown) => {
        this.#containers = null;
        throw error;
      },
    );
    return this.#containers;
  }

  async #createContainer(container: string): Promise<void> {
    const what = `creating container ${container}`;
    const response = await this.#client.request({
      method: 'PUT',
      path: objectPath(container),
      what,
    });
    if (response.statusCode >= 300) throw await this.#client.statusError(response, what);
    await response.body.dump();
  }

  /** HEAD of an object; StoreNotFoundError when it is missing. */
  async #head(name: string, what: string): Promise<Dispatcher.ResponseData> {
    const response = await this.#client.request({
      method: 'HEAD',
      path: objectPath(this.#options.container, name),
      what,
    });
    // statusError reads the body, which a dump would have consumed.
    if (response.statusCode >= 300) throw await this.#client.statusError(response, what);
    await response.body.dump();
    return response;
  }

  async #deleteManifest(name: string, what: string): Promise<void> {
    const response = await this.#client.request({
      method: 'DELETE',
      path: `${objectPath(this.#options.container, name)}?multipart-manifest=delete`,
      what,
      headers: { accept: 'application/json' },
    });
    if (response.statusCode === 404) {
      await response.body.dump();
      return;
    }
    if (response.statusCode >= 300) throw await this.#client.statusError(response, what);
    // Swift answers 200 and tells in the body how deleting each segment went.
    const result = parseJson<ManifestDeleteResult>(await response.body.text()) ?? {};
    const status = String(result['Response Status'] ?? '');
    const errors = Array.isArray(result.Errors) ? result.Errors : [];
    if (!/^(2\d\d|404)/.test(status) || errors.length > 0) {
      throw this.#client.unavailable(`${what}: ${status} ${JSON.stringify(errors).slice(0, 300)}`);
    }
  }

  /** Names in the segments container starting with `prefix`, page by page. */
  async #listSegments(prefix: string): Promise<string[]> {
    const names: string[] = [];
    for (;;) {
      const query = new URLSearchParams({ format: 'json', prefix, marker: names.at(-1) ?? '' });
      const what = `listing ${this.#segments}/${prefix}`;
      const response = await this.#client.request({
        method: 'GET',
        path: `${objectPath(this.#segments)}?${query}`,
        what,
      });
      if (response.statusCode === 404) {
        await response.body.dump();
        return names;
      }
      if (response.statusCode >= 300) throw await this.#client.statusError(response, what);
      const page = parseJson<Array<{ name?: unknown }>>(await response.body.text()) ?? [];
      const found = page.flatMap((entry) => (typeof entry.name === 'string' ? [entry.name] : []));
      if (found.length === 0) return names;
      names.push(...found);
    }
  }

  /** Segment names the committed manifest of an image refers to (none for a plain object). */
  async #committedSegments(imageId: string): Promise<Set<string>> {
    const what = `reading the manifest of ${this.#options.container}/${imageId}`;
    const response = await this.#client.request({
      method: 'GET',
      path: `${objectPath(this.#options.container, imageId)}?multipart-manifest=get`,
      what,
    });
    if (response.statusCode >= 300 && response.statusCode !== 404) {
      throw await this.#client.statusError(response, what);
    }
    if (response.statusCode === 404 || !isManifest(response)) {
      await response.body.dump();
      return new Set();
    }
    const entries = parseJson<ManifestEntry[]>(await response.body.text()) ?? [];
    const prefix = `/${this.#segments}/`;
    return new Set(
      entries.flatMap((entry) =>
        typeof entry.name === 'string' && entry.name.startsWith(prefix)
          ? [entry.name.slice(prefix.length)]
          : [],
      ),
    );
  }

  /** The object name of a location, once logged in; StoreNotFoundError when not this store's. */
  async #nameOfLocation(location: string): Promise<string> {
    await this.#client.session();
    const name = this.#objectNameOf(location);
    if (name === null) {
      throw new StoreNotFoundError(`location ${location} is not in Swift store ${this.id}`);
    }
    return name;
  }

  #objectNameOf(location: string): string | null {
    let plain: string;
    try {
      const url = new URL(location);
      const transport = TRANSPORTS[url.protocol];
      if (!transport || url.search !== '' || url.hash !== '') return null;
      // Parsed again as http(s), so that default ports and case compare as Swift's URLs do.
      plain = new URL(`${transport}//${url.host}${url.pathname}`).href;
    } catch {
      return null;
    }
    const container = encodeURIComponent(this.#options.container);
    const bases = [this.#client.storageUrl, this.#options.authUrl];
    for (const base of bases) {
      if (base === null) continue;
      const prefix = `${new URL(base).href.replace(/\/+$/, '')}/${container}/`;
      const rest = plain.startsWith(prefix) ? plain.slice(prefix.length) : '';
      if (IMAGE_ID.test(rest)) return rest;
    }
    return null;
  }
}

function checkOptions(options: SwiftStoreOptions): void {
  const problem =
    !Number.isSafeInteger(options.largeObjectChunkSize) || options.largeObjectChunkSize < 1
      ? 'largeObjectChunkSize must be a positive integer'
      : !Number.isSafeInteger(options.largeObjectSize) || options.largeObjectSize < 1
        ? 'largeObjectSize must be a positive integer'
        : !/^[^/]+$/.test(options.container)
          ? 'container must be a name without slashes'
          : null;
  if (problem) throw new Error(`Swift store ${options.id}: ${problem}`);
}

function checkImageId(imageId: string): void {
  if (!IMAGE_ID.test(imageId)) throw new Error(`not an image id: ${imageId}`);
}

function isManifest(response: Dispatcher.ResponseData): boolean {
  return /^true$/i.test(headerOf(response, 'x-static-large-object') ?? '');
}

function parseJson<T>(text: string): T | null {
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

/**
 * Passes `body` on, and errors the result when fewer (or more) bytes than `expected` arrive or
 * the body fails: a dropped connection must not look like the end of the data.
 */
function checkedLength(
  body: Readable,
  expected: number | null,
  failure: (seen: number, cause?: unknown) => Error,
): Readable {
  let seen = 0;
  const checked = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      callback(expected === null || seen === expected ? null : failure(seen));
    },
  });
  body.on('error', (error) => checked.destroy(failure(seen, error)));
  // A reader that stops early releases the connection.
  checked.on('close', () => body.destroy());
  body.pipe(checked);
  return checked;
}
