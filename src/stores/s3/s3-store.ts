/**
 * A store in an S3 bucket (Amazon S3, or any S3 API such as Swift's s3api or Ceph RGW).
 *
 *   <bucket>/<image id>   committed image data
 *
 * Locations are `s3+http://<host[:port]>/<bucket>/<image id>` (`s3+https`, or `s3` for an
 * endpoint configured as a bare host name). Unlike upstream Glance, they carry no
 * credentials: the store's own settings sign every request. Upstream locations with
 * credentials in them are still recognised, and their credentials ignored.
 *
 * Writes go through S3Writer (a single PUT or a multipart upload, made visible at commit).
 * The AWS SDK is loaded on first use, so a deployment without S3 stores never pays for it.
 *
 * Timeouts: connecting is bounded, and so is a socket's silence, also while a reader is
 * paused. A download whose consumer stops reading for that long fails rather than hold the
 * connection open.
 */
import { Readable } from 'node:stream';

import type * as S3Sdk from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';

import {
  StoreNotFoundError,
  StoreUnavailableError,
  type ByteRange,
  type ImageStore,
  type StoreWriter,
} from '../store.js';
import type { S3StoreOptions } from './s3-config.js';
import { errorName, isNotFound, statusOf, storeError } from './s3-errors.js';
import { S3Writer } from './s3-writer.js';

export { S3_STORE_SETTINGS, type S3StoreOptions } from './s3-config.js';

const CONNECT_TIMEOUT_MS = 10_000;
/** A socket silent this long (no byte either way) is given up. */
const IDLE_TIMEOUT_MS = 60_000;
/** Until the answer's headers, which for a part includes sending it. */
const REQUEST_TIMEOUT_MS = 15 * 60_000;
/** One retry of a failed request: enough for a dropped keep-alive connection. */
const MAX_ATTEMPTS = 2;
const MIB = 1024 * 1024;

interface Connection {
  readonly sdk: typeof S3Sdk;
  readonly client: S3Client;
}

export class S3Store implements ImageStore {
  readonly id: string;
  readonly type = 's3';
  readonly scheme: string;
  readonly readOnly = false;
  readonly #options: S3StoreOptions;
  readonly #endpoint: URL;
  #connection: Promise<Connection> | null = null;
  #bucketReady: Promise<void> | null = null;

  constructor(options: S3StoreOptions) {
    this.id = options.id;
    this.#options = options;
    const bare = !options.endpoint.includes('://');
    this.#endpoint = new URL(bare ? `https://${options.endpoint}` : options.endpoint);
    this.scheme = bare ? 's3' : `s3+${this.#endpoint.protocol.slice(0, -1)}`;
  }

  /**
   * Loads the SDK and, when asked to, creates the bucket. An S3 that does not answer yet does
   * not fail the start: the bucket is then created before the first write, and probe reports
   * the outage.
   */
  async init(): Promise<void> {
    await this.#connect();
    if (this.#options.createBucketOnPut) await this.#ensureBucket().catch(() => undefined);
  }

  async close(): Promise<void> {
    const connection = await this.#connection?.catch(() => null);
    this.#connection = null;
    connection?.client.destroy();
  }

  owns(location: string): boolean {
    return this.#keyIn(location) !== null;
  }

  properties(): Record<string, unknown> {
    return {
      s3_store_large_object_size: this.#options.largeObjectSize / MIB,
      s3_store_large_object_chunk_size: this.#options.largeObjectChunkSize / MIB,
      s3_store_thread_pools: this.#options.threadPools,
    };
  }

  async probe(): Promise<void> {
    const { sdk, client } = await this.#connect();
    const Bucket = this.#options.bucket;
    await client.send(new sdk.HeadBucketCommand({ Bucket })).catch((error: unknown) => {
      throw storeError(this.id, `HEAD of bucket ${Bucket}`, error, false);
    });
  }

  async sizeOf(location: string): Promise<number> {
    const Key = this.#keyOf(location);
    const { sdk, client } = await this.#connect();
    const command = new sdk.HeadObjectCommand({ Bucket: this.#options.bucket, Key });
    const head = await client.send(command).catch((error: unknown) => {
      throw storeError(this.id, `HEAD of ${Key}`, error);
    });
    if (head.ContentLength === undefined) {
      throw new StoreUnavailableError(`S3 store ${this.id}: no size given for ${Key}`);
    }
    return head.ContentLength;
  }

  locationOf(imageId: string): string {
    if (!/^[0-9a-fA-F-]{36}$/.test(imageId)) throw new Error(`not an image id: ${imageId}`);
    return `${this.scheme}://${this.#endpoint.host}/${this.#options.bucket}/${imageId}`;
  }

  async createWriter(imageId: string): Promise<StoreWriter> {
    const location = this.locationOf(imageId);
    const { sdk, client } = await this.#connect();
    if (this.#options.createBucketOnPut) await this.#ensureBucket();
    const { bucket, largeObjectChunkSize, largeObjectSize, threadPools } = this.#options;
    return new S3Writer({
      sdk,
      client,
      storeId: this.id,
      bucket,
      key: imageId,
      location,
      partSize: largeObjectChunkSize,
      singlePutLimit: largeObjectSize,
      queueSize: threadPools,
    });
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const Key = this.#keyOf(location);
    const { sdk, client } = await this.#connect();
    const Range = range ? `bytes=${range.start}-${range.end}` : undefined;
    const command = new sdk.GetObjectCommand({ Bucket: this.#options.bucket, Key, Range });
    const object = await client.send(command).catch((error: unknown) => {
      // A range starting past the end holds no bytes, as a file store would answer.
      if (statusOf(error) === 416 && errorName(error) === 'InvalidRange') return null;
      throw storeError(this.id, `GET of ${Key}`, error);
    });
    if (object === null) return Readable.from([]);
    if (!(object.Body instanceof Readable)) {
      throw new StoreUnavailableError(`S3 store ${this.id}: GET of ${Key} gave no stream`);
    }
    return checkedBody(object.Body, object.ContentLength, (error) =>
      storeError(this.id, `GET of ${Key}`, error, false),
    );
  }

  async delete(location: string): Promise<void> {
    const Key = this.#keyOf(location);
    const { sdk, client } = await this.#connect();
    const command = new sdk.DeleteObjectCommand({ Bucket: this.#options.bucket, Key });
    await client.send(command).catch((error: unknown) => {
      if (!isNotFound(error)) throw storeError(this.id, `DELETE of ${Key}`, error, false);
    });
  }

  /** Aborts the multipart uploads a dead process left for this image. */
  async discardUncommitted(imageId: string): Promise<void> {
    const { sdk, client } = await this.#connect();
    const Bucket = this.#options.bucket;
    let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
    for (;;) {
      const list = new sdk.ListMultipartUploadsCommand({ Bucket, Prefix: imageId, ...markers });
      const page = await client.send(list).catch((error: unknown) => {
        throw storeError(this.id, `listing uploads of ${imageId}`, error, false);
      });
      for (const { Key, UploadId } of page.Uploads ?? []) {
        if (Key === imageId && UploadId) await this.#abortUpload(Key, UploadId);
      }
      if (page.IsTruncated !== true) return;
      markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
    }
  }

  async #abortUpload(Key: string, UploadId: string): Promise<void> {
    const { sdk, client } = await this.#connect();
    const Bucket = this.#options.bucket;
    const command = new sdk.AbortMultipartUploadCommand({ Bucket, Key, UploadId });
    await client.send(command).catch((error: unknown) => {
      // Gone already: another process cleaned it up first.
      if (errorName(error) === 'NoSuchUpload' || isNotFound(error)) return;
      throw storeError(this.id, `abort of upload ${UploadId}`, error, false);
    });
  }

  #connect(): Promise<Connection> {
    this.#connection ??= connect(this.#options);
    return this.#connection;
  }

  /** Creates the bucket unless it exists; a failed attempt is tried again next time. */
  #ensureBucket(): Promise<void> {
    this.#bucketReady ??= this.#createBucket().catch((error: unknown) => {
      this.#bucketReady = null;
      throw error;
    });
    return this.#bucketReady;
  }

  async #createBucket(): Promise<void> {
    const { sdk, client } = await this.#connect();
    const { bucket: Bucket, region } = this.#options;
    const exists = await client.send(new sdk.HeadBucketCommand({ Bucket })).then(
      () => true,
      (error: unknown) => {
        if (isNotFound(error)) return false;
        throw storeError(this.id, `HEAD of bucket ${Bucket}`, error, false);
      },
    );
    if (exists) return;
    // us-east-1 is the one region that refuses to be named as a location constraint.
    const CreateBucketConfiguration =
      region === 'us-east-1'
        ? undefined
        : { LocationConstraint: region as S3Sdk.BucketLocationConstraint };
    const command = new sdk.CreateBucketCommand({ Bucket, CreateBucketConfiguration });
    await client.send(command).catch((error: unknown) => {
      if (errorName(error) === 'BucketAlreadyOwnedByYou') return;
      throw storeError(this.id, `creation of bucket ${Bucket}`, error, false);
    });
  }

  /** The key a location of this store names, or null when it is not one of ours. */
  #keyIn(location: string): string | null {
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      return null;
    }
    if (!['s3:', 's3+http:', 's3+https:'].includes(url.protocol)) return null;
    if (url.host.toLowerCase() !== this.#endpoint.host.toLowerCase()) return null;
    const prefix = `/${this.#options.bucket}/`;
    if (!url.pathname.startsWith(prefix) || url.pathname.length === prefix.length) return null;
    try {
      return decodeURIComponent(url.pathname.slice(prefix.length));
    } catch {
      return null;
    }
  }

  #keyOf(location: string): string {
    const key = this.#keyIn(location);
    if (key === null) {
      throw new StoreNotFoundError(`location ${location} is not in the S3 store ${this.id}`);
    }
    return key;
  }
}

async function connect(options: S3StoreOptions): Promise<Connection> {
  const sdk = await import('@aws-sdk/client-s3');
  const endpoint = options.endpoint.includes('://')
    ? options.endpoint
    : `https://${options.endpoint}`;
  const client = new sdk.S3Client({
    endpoint,
    region: options.region,
    forcePathStyle: options.pathStyle,
    credentials: { accessKeyId: options.accessKey, secretAccessKey: options.secretKey },
    // Checksums only where S3 requires them: s3api (Swift) refuses the aws-chunked bodies
    // that the SDK's default would send, and the image pipeline hashes the data anyway.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: MAX_ATTEMPTS,
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      socketTimeout: IDLE_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      throwOnRequestTimeout: true,
    },
  });
  return { sdk, client };
}

/**
 * The object's bytes, as a stream that errors (with StoreUnavailableError) when the
 * connection fails or ends before Content-Length bytes came.
 */
function checkedBody(
  body: Readable,
  expected: number | undefined,
  fail: (error: unknown) => Error,
): Readable {
  async function* counted(): AsyncGenerator<Buffer, void, undefined> {
    let received = 0;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        received += chunk.length;
        yield chunk;
      }
    } catch (error) {
      throw fail(error);
    }
    if (expected !== undefined && received !== expected) {
      throw fail(new Error(`the body ended after ${received} of ${expected} bytes`));
    }
  }
  return Readable.from(counted(), { objectMode: false });
}
