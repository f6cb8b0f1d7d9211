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
import { createReadStream } from 'node:fs';
import { access, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';

import {
  StoreNotFoundError,
  StoreUnavailableError,
  type ByteRange,
  type ImageStore,
  type StoreWriter,
} from '../store.js';

export interface FileStoreOptions {
  readonly id: string;
  readonly root: string;
  /** Flush data to disk before an image becomes visible (durability across power loss). */
  readonly fsync: boolean;
}

/** Writes are gathered into blocks of this size to keep system calls few at high rates. */
const BLOCK_SIZE = 1024 * 1024;
const PARTIAL_DIR = '.partial';

export class FileStore implements ImageStore {
  readonly id: string;
  readonly type = 'file';
  readonly scheme = 'file';
  readonly readOnly = false;
  readonly #root: string;
  readonly #fsync: boolean;

  constructor(options: FileStoreOptions) {
    this.id = options.id;
    this.#root = resolve(options.root);
    this.#fsync = options.fsync;
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
    return { data_dir: this.#root, chunk_size: BLOCK_SIZE, thin_provisioning: false };
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
    const handle = await open(partialPath, 'wx').catch((error: unknown) => {
      throw storeError(this.id, error, partialPath);
    });
    return new FileWriter(this.id, handle, partialPath, finalPath, this.#root, this.#fsync);
  }

  async read(location: string, range?: ByteRange): Promise<Readable> {
    const path = this.#pathOfLocation(location);
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

/**
 * Gathers chunks into 1 MiB blocks and writes each block while the next one fills (two
 * blocks in turn), so that receiving data and writing it to disk overlap.
 */
class FileWriter implements StoreWriter {
  #block = Buffer.allocUnsafe(BLOCK_SIZE);
  #spare = Buffer.allocUnsafe(BLOCK_SIZE);
  #filled = 0;
  #writing: Promise<void> | null = null;
  #done = false;

  constructor(
    private readonly storeId: string,
    private readonly handle: FileHandle,
    private readonly partialPath: string,
    private readonly finalPath: string,
    private readonly root: string,
    private readonly fsync: boolean,
  ) {}

  async write(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const taken = chunk.copy(this.#block, this.#filled, offset);
      this.#filled += taken;
      offset += taken;
      if (this.#filled === BLOCK_SIZE) await this.#startBlockWrite();
    }
  }

  /** Waits for the previous block's write, then starts writing the full one. */
  async #startBlockWrite(): Promise<void> {
    await this.#writing;
    const full = this.#block;
    const length = this.#filled;
    this.#block = this.#spare;
    this.#spare = full;
    this.#filled = 0;
    this.#writing = this.handle.write(full, 0, length).then(
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
  }

  async commit(): Promise<string> {
    await this.#flushBlock();
    if (this.fsync) await this.handle.datasync();
    await this.handle.close();
    this.#done = true;

    await rename(this.partialPath, this.finalPath);
    if (this.fsync) await syncDirectory(this.root);
    return pathToFileURL(this.finalPath).href;
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#writing?.catch(() => undefined);
    await this.handle.close().catch(() => undefined);
    await unlink(this.partialPath).catch(() => undefined);
  }
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
