/**
 * The S3 store against the store conformance suite, on the S3 API of the real Swift that
 * scripts/swift.sh runs (its s3api middleware). Each run uses a bucket of its own and
 * removes it.
 */
import { randomBytes } from 'node:crypto';

import {
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';

import type { S3StoreOptions } from '../../src/stores/s3/s3-config.js';
import { S3Store } from '../../src/stores/s3/s3-store.js';
import {
  SWIFT_S3_ACCESS_KEY,
  SWIFT_S3_ENDPOINT,
  SWIFT_S3_REGION,
  SWIFT_S3_SECRET_KEY,
  swiftAvailability,
} from '../support/swift.js';
import { startTcpProxy } from '../support/tcp-proxy.js';
import { describeStoreConformance } from './conformance.js';

const MIB = 1024 * 1024;
/** S3's smallest part (but the last). */
const PART_SIZE = 5 * MIB;

const { skip } = await swiftAvailability();

describeStoreConformance(
  'S3Store',
  async () => {
    const bucket = `glimpse-conformance-${randomBytes(4).toString('hex')}`;
    const options = (id: string, endpoint = SWIFT_S3_ENDPOINT): S3StoreOptions => ({
      id,
      endpoint,
      accessKey: SWIFT_S3_ACCESS_KEY,
      secretKey: SWIFT_S3_SECRET_KEY,
      region: SWIFT_S3_REGION,
      bucket,
      createBucketOnPut: true,
      pathStyle: true,
      largeObjectSize: 100 * MIB,
      largeObjectChunkSize: 100 * MIB,
      threadPools: 4,
    });

    const store = new S3Store(options('s3-test'));
    const segmented = new S3Store({
      ...options('s3-multipart'),
      largeObjectSize: PART_SIZE,
      largeObjectChunkSize: PART_SIZE,
      threadPools: 2,
    });
    const endpoint = new URL(SWIFT_S3_ENDPOINT);
    const proxy = await startTcpProxy({ host: endpoint.hostname, port: Number(endpoint.port) });
    const proxied = new S3Store(options('s3-proxied', proxy.url));
    const unreachable = new S3Store(options('s3-down', 'http://127.0.0.1:1'));
    await Promise.all([store.init(), segmented.init(), proxied.init()]);

    const admin = new S3Client({
      endpoint: SWIFT_S3_ENDPOINT,
      region: SWIFT_S3_REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: SWIFT_S3_ACCESS_KEY, secretAccessKey: SWIFT_S3_SECRET_KEY },
    });

    return {
      store,
      segmented: { store: segmented, segmentSize: PART_SIZE },
      proxied: { store: proxied, proxy },
      unreachable,
      // What an unfinished write leaves is a multipart upload of the image's key.
      async leftovers(imageId) {
        const page = await admin.send(
          new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: imageId }),
        );
        return (page.Uploads ?? []).map((upload) => `${upload.Key} ${upload.UploadId}`);
      },
      async close() {
        await Promise.all([store, segmented, proxied, unreachable].map((s) => s.close()));
        await proxy.close();
        await emptyBucket(admin, bucket);
        await admin.send(new DeleteBucketCommand({ Bucket: bucket }));
        admin.destroy();
      },
    };
  },
  { skip },
);

async function emptyBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [object.Key] : []));
    if (keys.length === 0) return;
    for (const Key of keys) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
  }
}
