/**
 * The settings of an S3 store, named as upstream Glance's glance_store names them, and their
 * translation into the driver's options. Sizes are configured in MiB, as upstream does, and
 * handed to the driver in bytes.
 *
 * This module loads no SDK, so the configuration layer can list and check the settings of a
 * deployment that never talks to S3.
 */
import { settingsChecker, type StoreSettingSpecs } from '../settings.js';

/** What the driver is built from; sizes in bytes. */
export interface S3StoreOptions {
  readonly id: string;
  /** http(s)://host[:port] of the S3 API. */
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region: string;
  readonly bucket: string;
  /** Create the bucket at start when it does not exist. */
  readonly createBucketOnPut: boolean;
  /** Address buckets as host/bucket (true) rather than bucket.host. */
  readonly pathStyle: boolean;
  /** Writes that end within this many bytes (and within one part) are a single PUT. */
  readonly largeObjectSize: number;
  /** Part size of multipart uploads. */
  readonly largeObjectChunkSize: number;
  /** Parts of one write uploaded at once. */
  readonly threadPools: number;
}

const MIB = 1024 * 1024;
/** S3 refuses parts under 5 MiB (but the last) and objects or parts over 5 GiB. */
const MIN_PART_MIB = 5;
const MAX_OBJECT_MIB = 5 * 1024;

export const S3_STORE_SETTINGS = {
  s3_store_host: {
    type: 'string',
    default: null,
    required: true,
    description:
      'URL of the S3 API, e.g. http://127.0.0.1:8080; a bare host name means https. ' +
      'Locations name it, so keep it stable once images are stored.',
  },
  s3_store_access_key: {
    type: 'string',
    default: null,
    required: true,
    description: 'S3 access key.',
  },
  s3_store_secret_key: {
    type: 'string',
    default: null,
    required: true,
    description: 'S3 secret key.',
  },
  s3_store_bucket: {
    type: 'string',
    default: null,
    required: true,
    pattern: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
    description: 'Bucket holding the image data (3-63 of a-z, 0-9, dot and hyphen).',
  },
  s3_store_create_bucket_on_put: {
    type: 'boolean',
    default: false,
    description: 'Create the bucket at start when it does not exist.',
  },
  s3_store_bucket_url_format: {
    type: 'string',
    default: 'auto',
    enum: ['auto', 'path', 'virtual'],
    description:
      'path: http://host/bucket; virtual: http://bucket.host; auto: virtual for Amazon S3 ' +
      '(*.amazonaws.com), path for anything else.',
  },
  s3_store_region_name: {
    type: 'string',
    default: 'us-east-1',
    description: 'Region requests are signed for.',
  },
  s3_store_large_object_size: {
    type: 'integer',
    default: 100,
    minimum: 1,
    maximum: MAX_OBJECT_MIB,
    description:
      'MiB. Data up to this size, and no larger than one chunk, is sent in a single PUT; ' +
      'anything larger as a multipart upload.',
  },
  s3_store_large_object_chunk_size: {
    type: 'integer',
    default: 10,
    minimum: MIN_PART_MIB,
    maximum: MAX_OBJECT_MIB,
    description:
      'MiB. Part size of multipart uploads. An image can have at most 10,000 parts on ' +
      'Amazon S3 and 1,000 on Swift.',
  },
  s3_store_thread_pools: {
    type: 'integer',
    // Upstream's default is 10; each part in flight holds a chunk in memory, so 4 keeps an
    // upload near 40 MiB while still overlapping parts.
    default: 4,
    minimum: 1,
    maximum: 100,
    description:
      'Parts of one write in memory at once (being filled or uploaded). Memory per upload ' +
      'is this times s3_store_large_object_chunk_size.',
  },
} as const satisfies StoreSettingSpecs;

export type S3StoreSettingName = keyof typeof S3_STORE_SETTINGS;

const checkSettings = settingsChecker(S3_STORE_SETTINGS);

/** The driver options of store `id`; throws an Error naming the store and the bad setting. */
export function parseS3Settings(id: string, settings: Record<string, unknown>): S3StoreOptions {
  const value = checkSettings(id, settings);

  const endpoint = parseEndpoint(id, String(value('s3_store_host')));
  const chunkMib = value('s3_store_large_object_chunk_size') as number;
  return {
    id,
    endpoint: endpoint.href.replace(/\/$/, ''),
    accessKey: value('s3_store_access_key') as string,
    secretKey: value('s3_store_secret_key') as string,
    region: value('s3_store_region_name') as string,
    bucket: value('s3_store_bucket') as string,
    createBucketOnPut: value('s3_store_create_bucket_on_put') as boolean,
    pathStyle: pathStyleFor(value('s3_store_bucket_url_format') as string, endpoint),
    largeObjectSize: (value('s3_store_large_object_size') as number) * MIB,
    largeObjectChunkSize: chunkMib * MIB,
    threadPools: value('s3_store_thread_pools') as number,
  };
}

/** Upstream accepts a bare host name (then https) as well as a URL. */
function parseEndpoint(id: string, host: string): URL {
  const text = /^[a-z][a-z0-9+.-]*:\/\//i.test(host) ? host : `https://${host}`;
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch {
    url = null;
  }
  const plain =
    url !== null &&
    (url.protocol === 'http:' || url.protocol === 'https:') &&
    url.username === '' &&
    url.password === '' &&
    url.pathname === '/' &&
    url.search === '' &&
    url.hash === '';
  if (!plain || url === null) {
    throw new Error(
      `store ${id}: setting 's3_store_host' must be http(s)://host[:port] or a host name, ` +
        `got '${host}'`,
    );
  }
  return url;
}

/** Amazon S3 prefers virtual-hosted buckets; other S3 services mostly only do paths. */
function pathStyleFor(format: string, endpoint: URL): boolean {
  if (format === 'path') return true;
  if (format === 'virtual') return false;
  return !/(^|\.)amazonaws\.com$/i.test(endpoint.hostname);
}
