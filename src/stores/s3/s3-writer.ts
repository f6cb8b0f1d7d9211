/**
 * Writes one object to S3 in constant memory, without knowing its size in advance.
 *
 * Data is copied into part-sized blocks. A write that ends within its first block (and within
 * the single-PUT limit) becomes one PutObject at commit; anything larger becomes a multipart
 * upload whose parts are sent as their blocks fill, up to `queueSize` at a time. Either way
 * nothing is visible under the key before commit: a PUT only happens at commit, and a
 * multipart upload only shows once CompleteMultipartUpload succeeds.
 *
 * Memory: at most `queueSize` blocks of `partSize` bytes exist per writer (parts in flight
 * plus the block being filled). A write that needs a block waits until a part finishes,
 * which is the backpressure callers see. Blocks of finished parts are reused.
 */
import type * as S3Sdk from '@aws-sdk/client-s3';
import type { CompletedPart, S3Client } from '@aws-sdk/client-s3';

import { StoreUnavailableError, type StoreWriter } from '../store.js';
import { storeError } from './s3-errors.js';

/** S3's limit; Swift's s3api stops at 1,000, and says so itself. */
const MAX_PARTS = 10_000;

export interface UploadTarget {
  readonly sdk: typeof S3Sdk;
  readonly client: S3Client;
  readonly storeId: string;
  readonly bucket: string;
  readonly key: string;
  /** Returned by commit. */
  readonly location: string;
  readonly partSize: number;
  /** Largest write sent as a single PutObject. */
  readonly singlePutLimit: number;
  /** Parts in flight plus the block being filled. */
  readonly queueSize: number;
}

type WriterState = 'open' | 'committing' | 'done';

export class S3Writer implements StoreWriter {
  #block: Buffer | null = null;
  #filled = 0;
  /** Blocks whose part is uploaded, for the next parts. */
  #spare: Buffer[] = [];
  #nextPart = 1;
  #uploadId: Promise<string> | null = null;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #parts: CompletedPart[] = [];
  #failure: Error | null = null;
  #state: WriterState = 'open';
  #committing: Promise<string> | null = null;

  constructor(private readonly target: UploadTarget) {}

  async write(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      this.#checkOpen();
      const block = this.#block ?? (await this.#takeBlock());
      const taken = chunk.copy(block, this.#filled, offset);
      this.#filled += taken;
      offset += taken;
      if (this.#filled === block.length) this.#sendBlock();
    }
  }

  commit(): Promise<string> {
    this.#checkOpen();
    this.#state = 'committing';
    this.#committing = this.#finish();
    return this.#committing;
  }

  async abort(): Promise<void> {
    if (this.#state === 'committing') await this.#committing?.catch(() => undefined);
    if (this.#state === 'done') return;
    this.#state = 'done';
    await this.#discard();
  }

  #checkOpen(): void {
    if (this.#failure) throw this.#failure;
    if (this.#state !== 'open') {
      throw new StoreUnavailableError(`S3 store ${this.target.storeId}: the write is over`);
    }
  }

  /** A block to fill, once fewer than queueSize blocks are in use. */
  async #takeBlock(): Promise<Buffer> {
    while (this.#inFlight.size >= this.target.queueSize) {
      await Promise.race(this.#inFlight);
      this.#checkOpen();
    }
    this.#block = this.#spare.pop() ?? Buffer.allocUnsafe(this.target.partSize);
    return this.#block;
  }

  /** Starts uploading the filled block as the next part. */
  #sendBlock(): void {
    const block = this.#block;
    if (block === null) return;
    const data = block.subarray(0, this.#filled);
    const partNumber = this.#nextPart++;
    this.#block = null;
    this.#filled = 0;

    // Failures are kept for the next write or the commit; the task itself never rejects.
    const task: Promise<void> = this.#uploadPart(partNumber, data)
      .then(
        () => void this.#spare.push(block),
        (error: unknown) => {
          this.#failure ??= storeError(this.target.storeId, `part ${partNumber}`, error, false);
        },
      )
      .then(() => void this.#inFlight.delete(task));
    this.#inFlight.add(task);
  }

  async #uploadPart(partNumber: number, body: Buffer): Promise<void> {
    if (partNumber > MAX_PARTS) {
      throw new Error(`more than ${MAX_PARTS} parts; raise s3_store_large_object_chunk_size`);
    }
    const { sdk, client, bucket, key } = this.target;
    const UploadId = await this.#startUpload();
    const command = new sdk.UploadPartCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      PartNumber: partNumber,
      Body: body,
      ContentLength: body.length,
    });
    const { ETag } = await client.send(command);
    if (!ETag) throw new Error(`no ETag for part ${partNumber}`);
    this.#parts.push({ PartNumber: partNumber, ETag });
  }

  #startUpload(): Promise<string> {
    const { sdk, client, bucket, key } = this.target;
    this.#uploadId ??= client
      .send(new sdk.CreateMultipartUploadCommand({ Bucket: bucket, Key: key }))
      .then(({ UploadId }) => {
        if (!UploadId) throw new Error('CreateMultipartUpload returned no UploadId');
        return UploadId;
      });
    return this.#uploadId;
  }

  async #finish(): Promise<string> {
    try {
      if (this.#nextPart === 1 && this.#filled <= this.target.singlePutLimit) {
        await this.#putWhole();
      } else {
        if (this.#filled > 0 || this.#nextPart === 1) this.#sendBlock();
        await this.#settle();
        if (this.#failure) throw this.#failure;
        await this.#complete();
      }
      this.#state = 'done';
      this.#release();
      return this.target.location;
    } catch (error) {
      this.#state = 'done';
      await this.#discard();
      throw storeError(this.target.storeId, `write of ${this.target.key}`, error, false);
    }
  }

  async #putWhole(): Promise<void> {
    const { sdk, client, bucket, key } = this.target;
    const body = this.#block?.subarray(0, this.#filled) ?? Buffer.alloc(0);
    const command = new sdk.PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ContentLength: body.length,
    });
    await client.send(command);
  }

  async #complete(): Promise<void> {
    const { sdk, client, bucket, key } = this.target;
    const parts = [...this.#parts].sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    const command = new sdk.CompleteMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId: await this.#startUpload(),
      MultipartUpload: { Parts: parts },
    });
    await client.send(command);
  }

  async #settle(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  /**
   * Lets the parts in flight finish before aborting the upload: a part cut off mid-request
   * could still land after the abort and stay behind. Never throws; what an unreachable
   * store keeps is removed later by the store's discardUncommitted.
   */
  async #discard(): Promise<void> {
    await this.#settle();
    this.#release();
    const uploadId = await this.#uploadId?.catch(() => null);
    if (!uploadId) return;
    const { sdk, client, bucket, key } = this.target;
    const command = new sdk.AbortMultipartUploadCommand({
      Bucket: bucket,
      Key: key,
      UploadId: uploadId,
    });
    await client.send(command).catch(() => undefined);
  }

  #release(): void {
    this.#block = null;
    this.#spare = [];
  }
}
