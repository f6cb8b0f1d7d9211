/**
 * A store on the local file system.
 *
 *   <root>/
 *     <image id>            committed image data (location file://<root>/<image id>)
 *     .partial/
 *       <image id>.<nonce>  a write in progress; renamed over its final name on commit
 *
 * Commit flushes the file (unless `fsync` is off), renames it, then flushes the directory, so
 * that after a crash an image's name holds either nothing or complete data.
 */
import { randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { access, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  StoreNotFoundError,
  StoreUnavailableError,
  type ByteRange,
  type ImageStore,
  type StoreWriter,
} from '../store.js';
import { ALIGNMENT, releaseAlignedBlock, takeAlignedBlock } from './aligned-blocks.js';

export interface FileStoreOptions {
  readonly id: string;
  readonly root: string;
  /** Flush data to disk before an image becomes visible (durability across power loss). */
  readonly fsync: boolean;
  /** Write with O_DIRECT where the file system allows it (default true). */
  readonly directIo?: boolean;
}

/** Writes are gathered into blocks of this size to keep system calls few at high rates. */
/**
 * Writes gather chunks into blocks of this size (two per write in progress, so that receiving
 * and writing overlap). Half a MiB saved 8 MiB over eight concurrent uploads but cost them
 * about 5% of their throughput on this kind of machine.
 */
const WRITE_BLOCK_SIZE = 1024 * 1024;
/** Whole-file reads go a MiB at a time: larger reads keep the device busier. */
const READ_BLOCK_SIZE = 1024 * 1024;
const PARTIAL_DIR = '.partial';
/** Whole-file reads with O_DIRECT keep this many reads in flight. */
const READ_AHEAD = 2;

export class FileStore implements ImageStore {
  readonly id: string;
  readonly type = 'file';
  readonly scheme = 'file';
  readonly readOnly = false;
  readonly #root: string;
  readonly #fsync: boolean;
  /** Whether writes use O_DIRECT; turned off once the file system refuses it. */
  #directIo: boolean;

  constructor(options: FileStoreOptions) {
    this.id = options.id;
    this.#root = resolve(options.root);
    this.#fsync = options.fsync;
    this.#directIo = options.directIo ?? true;
  }

  async init(): Promise<void> {
    await mkdir(join(this.#root, PARTIAL_DIR), { recursive: true });
  }

  async close(): Promise<void> {}

  owns(location: string): boolean {
    if (!location.startsWith('file:')) return false;
    try {
      return resolve(fileURLToPath(location)).startsWith(`${this.#root}/`);
    } catch {
      return false;
    }
  }

  properties(): Record<string, unknown> {
    return { data_dir: this.#root, chunk_size: WRITE_BLOCK_SIZE, thin_provisioning: false };
  }

  async probe(): Promise<void> {
    await access(join(this.#root, PARTIAL_DIR)).catch((error: unknown) => {
      throw storeError(this.id, error, this.#root);
    });
  }

  async sizeOf(location: string): Promise<number> {
    const path = this.#pathOfLocation(location);
    const stats = await stat(path).catch((error: unknown) => {
      throw storeError(this.id, error, path);
    });
    return stats.size;
  }

  async createWriter(imageId: string): Promise<StoreWriter> {
    const finalPath = this.#pathOf(imageId);
    const partialPath = join(
      this.#root,
      PARTIAL_DIR,
      `${imageId}.${randomBytes(6).toString('hex')}`,
    );
    const file = await this.#openPartial(partialPath).catch((error: unknown) => {
      throw storeError(this.id, error, partialPath);
    });
    return new FileWriter(this.id, file, partialPath, finalPath, this.#root, this.#fsync);
  }

  /**
   * Opens a new partial file, with O_DIRECT where the file system takes it (tmpfs and some
   * others refuse it with EINVAL; then, and from then on, the page cache is used).
   */
  async #openPartial(path: string): Promise<OpenedFile> {
    if (this.#directIo) {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DIRECT;
      try {
        return { handle: await open(path, flags, 0o644), direct: true };
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        this.#directIo = false;
      }
    }
    return { handle: await open(path, 'wx'), direct: false };
  }

  /**
   * Whole images are read with O_DIRECT (where the file system takes it), for the reason
   * writes are; ranges, often small and repeated, go through the page cache.
   */
  async read(location: string, range?: ByteRange): Promise<Readable> {
    const path = this.#pathOfLocation(location);
    if (!range && this.#directIo) {
      const handle = await this.#openDirect(path);
      if (handle) return new DirectReadStream(handle, (error) => storeError(this.id, error, path));
    }
    const handle = await open(path, 'r').catch((error: unknown) => {
      throw storeError(this.id, error, path);
    });
    return createReadStream('', {
      fd: handle,
      start: range?.start,
      end: range?.end,
      highWaterMark: 256 * 1024,
    });
  }

  /** The file opened with O_DIRECT, or null when the file system refuses it. */
  async #openDirect(path: string): Promise<FileHandle | null> {
    try {
      return await open(path, constants.O_RDONLY | constants.O_DIRECT);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') return null;
      throw storeError(this.id, error, path);
    }
  }

  async delete(location: string): Promise<void> {
    await unlink(this.#pathOfLocation(location)).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        throw storeError(this.id, error, location);
    });
  }

  async discardUncommitted(imageId: string): Promise<void> {
    const dir = join(this.#root, PARTIAL_DIR);
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith(`${imageId}.`)) await unlink(join(dir, name)).catch(() => undefined);
    }
  }

  /** The committed file of an image, for tools that need a path (import plugins). */
  filePath(imageId: string): string {
    return this.#pathOf(imageId);
  }

  locationOf(imageId: string): string {
    return pathToFileURL(this.#pathOf(imageId)).href;
  }

  #pathOf(imageId: string): string {
    if (!/^[0-9a-fA-F-]{36}$/.test(imageId)) throw new Error(`not an image id: ${imageId}`);
    return join(this.#root, imageId);
  }

  /** Only locations inside this store's root are honoured, whatever the database says. */
  #pathOfLocation(location: string): string {
    const path = resolve(fileURLToPath(location));
    if (!path.startsWith(`${this.#root}/`)) {
      throw new StoreNotFoundError(`location ${location} is outside the store ${this.id}`);
    }
    return path;
  }
}

/** How a writer's file was opened: O_DIRECT needs aligned blocks and a padded last write. */
interface OpenedFile {
  readonly handle: FileHandle;
  readonly direct: boolean;
}

/**
 * Gathers chunks into blocks and writes each block while the next one fills (two
 * blocks in turn), so that receiving data and writing it to disk overlap.
 *
 * With O_DIRECT the blocks go from memory to the device without the page cache: writing new
 * pages through the cache costs the kernel more CPU than hashing does, on the same cores.
 * Such writes must be aligned, so the blocks are aligned memory, and the last, partial block
 * is written padded to the alignment and the file truncated back to the data's length.
 */
class FileWriter implements StoreWriter {
  #block: Buffer;
  #spare: Buffer;
  #filled = 0;
  /** Bytes handed to the file so far (the offset of the next block). */
  #position = 0;
  #writing: Promise<void> | null = null;
  #done = false;
  readonly #handle: FileHandle;
  readonly #direct: boolean;

  constructor(
    private readonly storeId: string,
    file: OpenedFile,
    private readonly partialPath: string,
    private readonly finalPath: string,
    private readonly root: string,
    private readonly fsync: boolean,
  ) {
    this.#handle = file.handle;
    this.#direct = file.direct;
    const block = () =>
      this.#direct ? takeAlignedBlock(WRITE_BLOCK_SIZE) : Buffer.allocUnsafe(WRITE_BLOCK_SIZE);
    this.#block = block();
    this.#spare = block();
  }

  async write(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const taken = chunk.copy(this.#block, this.#filled, offset);
      this.#filled += taken;
      offset += taken;
      if (this.#filled === WRITE_BLOCK_SIZE) await this.#startBlockWrite();
    }
  }

  /** Waits for the previous block's write, then starts writing the full one. */
  async #startBlockWrite(): Promise<void> {
    await this.#writing;
    const full = this.#block;
    const length = this.#filled;
    const position = this.#position;
    this.#block = this.#spare;
    this.#spare = full;
    this.#filled = 0;
    this.#position += length;
    // O_DIRECT writes whole aligned sectors: the tail is padded (and truncated at commit).
    const written = this.#direct ? padded(full, length) : length;
    this.#writing = this.#handle.write(full, 0, written, position).then(
      () => undefined,
      (error: unknown) => {
        throw storeError(this.storeId, error, this.partialPath);
      },
    );
    // A failure surfaces at the next write or at commit; keep it from being unhandled now.
    this.#writing.catch(() => undefined);
  }

  async #flushBlock(): Promise<void> {
    if (this.#filled > 0) await this.#startBlockWrite();
    await this.#writing;
    if (this.#direct && this.#position % ALIGNMENT !== 0) {
      await this.#handle.truncate(this.#position);
    }
  }

  async commit(): Promise<string> {
    await this.#flushBlock();
    if (this.fsync) await this.#handle.datasync();
    await this.#close();

    await rename(this.partialPath, this.finalPath);
    if (this.fsync) await syncDirectory(this.root);
    return pathToFileURL(this.finalPath).href;
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    await this.#writing?.catch(() => undefined);
    await this.#close().catch(() => undefined);
    await unlink(this.partialPath).catch(() => undefined);
  }

  async #close(): Promise<void> {
    this.#done = true;
    await this.#handle.close();
    if (this.#direct) {
      releaseAlignedBlock(this.#block);
      releaseAlignedBlock(this.#spare);
    }
  }
}

/** A read of one block: its data once it has arrived. */
interface BlockRead {
  data: Buffer | null;
}

/**
 * A whole file read with O_DIRECT, a block at a time into aligned memory, with READ_AHEAD
 * reads in flight ahead of the consumer (a deeper queue keeps the device busier than one
 * read at a time). Each block is copied out before its memory is reused: the consumer (a
 * socket) may hold a chunk long after it was pushed.
 */
class DirectReadStream extends Readable {
  /** Offset of the next read to start. */
  #next = 0;
  /** Reads started and not yet pushed, in file order. */
  readonly #pending: BlockRead[] = [];
  /** A short read was seen: the file ends there, and no more reads start. */
  #atEnd = false;
  #wanted = false;

  constructor(
    private readonly handle: FileHandle,
    private readonly failure: (error: unknown) => Error,
  ) {
    super({ highWaterMark: 2 * READ_BLOCK_SIZE });
  }

  override _read(): void {
    this.#wanted = true;
    while (!this.#atEnd && this.#pending.length < READ_AHEAD) this.#startRead();
    this.#deliver();
  }

  #startRead(): void {
    const entry: BlockRead = { data: null };
    const position = this.#next;
    this.#next += READ_BLOCK_SIZE;
    this.#pending.push(entry);
    this.#readAt(position).then(
      (data) => {
        entry.data = data;
        if (data.length < READ_BLOCK_SIZE) this.#atEnd = true;
        this.#deliver();
      },
      (error: unknown) => this.destroy(this.failure(error)),
    );
  }

  async #readAt(position: number): Promise<Buffer> {
    const block = takeAlignedBlock(READ_BLOCK_SIZE);
    try {
      const { bytesRead } = await this.handle.read(block, 0, READ_BLOCK_SIZE, position);
      return Buffer.from(block.subarray(0, bytesRead));
    } finally {
      releaseAlignedBlock(block);
    }
  }

  /** Pushes the reads that have arrived at the head of the queue, in file order. */
  #deliver(): void {
    while (this.#wanted && !this.destroyed && this.#pending[0]?.data) {
      const data = (this.#pending.shift() as BlockRead).data as Buffer;
      if (data.length > 0) this.#wanted = this.push(data);
      if (data.length < READ_BLOCK_SIZE) {
        this.#pending.length = 0;
        this.push(null);
        return;
      }
      if (!this.#atEnd) this.#startRead();
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.handle.close().then(
      () => callback(error),
      () => callback(error),
    );
  }
}

/** Zeroes `block` from `length` up to the next aligned length, and returns that length. */
function padded(block: Buffer, length: number): number {
  const aligned = Math.ceil(length / ALIGNMENT) * ALIGNMENT;
  block.fill(0, length, aligned);
  return aligned;
}

/** A rename is only durable once the directory entry itself is flushed. */
async function syncDirectory(path: string): Promise<void> {
  const directory = await open(path, 'r');
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

function storeError(storeId: string, error: unknown, path: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT')
    return new StoreNotFoundError(`file store ${storeId}: no data at ${path}`);
  if (code === 'ENOSPC') return new StoreUnavailableError(`file store ${storeId} is full`);
  return new StoreUnavailableError(
    `file store ${storeId}: failure at ${path}: ${code ?? String(error)}`,
  );
}
