/**
 * image_decompression: a staged gzip file or single-member zip archive is replaced by its
 * content, unless the image declares container_format `compressed` (then the archive is the
 * image). Output is streamed to a file beside the staged one and never grows past the size
 * cap, so a small archive that inflates to terabytes costs at most `sizeCap` bytes of disk.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createInflateRaw, crc32 } from 'node:zlib';

import { capOf, tempPathBeside } from './files.js';
import type { ImportPlugin, PluginContext, PluginOutcome, StagedData } from './types.js';
import { singleMember, ZipError, type ZipMember } from './zip.js';

type Archive = 'gzip' | 'zip' | 'lha';

/** Magic numbers and where they sit; LHA is recognised only to refuse it. */
const MAGIC: readonly { archive: Archive; offset: number; bytes: Buffer }[] = [
  { archive: 'zip', offset: 0, bytes: Buffer.from([0x50, 0x4b, 0x03, 0x04]) },
  { archive: 'lha', offset: 2, bytes: Buffer.from('-lh', 'latin1') },
  { archive: 'gzip', offset: 0, bytes: Buffer.from([0x1f, 0x8b, 0x08]) },
];
const HEADER_LENGTH = 5;

/**
 * Small reads keep the inflater's output per read small too: deflate expands at most about
 * 1000:1, so one read is at most ~16 MiB of output waiting for the disk.
 */
const READ_CHUNK = 16 * 1024;

export class DecompressionPlugin implements ImportPlugin {
  readonly name = 'image_decompression';

  async run(staged: StagedData, context: PluginContext): Promise<PluginOutcome> {
    if (staged.containerFormat === 'compressed') return {};
    const archive = await sniff(staged.path);
    if (archive === null) return {};
    if (archive === 'lha') throw new Error('LHA archives cannot be decompressed here');

    const temp = tempPathBeside(staged.path, 'decompress');
    try {
      const cap = capOf(context.sizeCap);
      if (archive === 'gzip') await gunzip(staged.path, temp, cap);
      else await unzip(staged.path, temp, cap);
      const { size } = await stat(temp);
      await rename(temp, staged.path);
      return { size };
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }
}

async function sniff(path: string): Promise<Archive | null> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.alloc(HEADER_LENGTH);
    const { bytesRead } = await file.read(head, 0, HEADER_LENGTH, 0);
    const data = head.subarray(0, bytesRead);
    const found = MAGIC.find(({ offset, bytes }) => {
      const field = data.subarray(offset, offset + bytes.length);
      return field.length === bytes.length && field.equals(bytes);
    });
    return found?.archive ?? null;
  } finally {
    await file.close();
  }
}

async function gunzip(source: string, target: string, cap: number): Promise<void> {
  const guard = new CapGuard(cap);
  try {
    await pipeline(
      createReadStream(source, { highWaterMark: READ_CHUNK }),
      createGunzip(),
      guard,
      createWriteStream(target, { flags: 'wx' }),
    );
  } catch (error) {
    throw describe(error, 'gzip');
  }
}

async function unzip(source: string, target: string, cap: number): Promise<void> {
  const file = await open(source, 'r');
  let member: ZipMember;
  try {
    member = await singleMember(file, (await file.stat()).size);
  } catch (error) {
    throw describe(error, 'zip');
  } finally {
    await file.close();
  }
  // Refused before any work when the archive itself admits it is too large.
  if (member.uncompressedSize > cap) throw new Error(capMessage(cap));

  const guard = new CapGuard(cap, member.uncompressedSize);
  try {
    await pipeline(
      memberData(source, member),
      member.method === 8 ? createInflateRaw() : new Transform({ transform: passThrough }),
      guard,
      createWriteStream(target, { flags: 'wx' }),
    );
  } catch (error) {
    throw describe(error, 'zip');
  }
  if (guard.total !== member.uncompressedSize || guard.crc !== member.crc32) {
    throw new Error('The image could not be decompressed: the zip member is corrupt');
  }
}

function memberData(path: string, member: ZipMember): Readable {
  if (member.compressedSize === 0) return Readable.from([]);
  return createReadStream(path, {
    start: member.dataOffset,
    end: member.dataOffset + member.compressedSize - 1,
    highWaterMark: READ_CHUNK,
  });
}

function passThrough(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
  done(null, chunk);
}

class SizeCapError extends Error {}

/**
 * Counts what the decompressor produced and stops it before the chunk that would cross the
 * cap is written; also tracks the CRC-32 the zip format records. `declared` is the size the
 * archive announced: more output than that means the archive lied.
 */
class CapGuard extends Transform {
  total = 0;
  crc = 0;

  constructor(
    private readonly cap: number,
    private readonly declared: number = Number.MAX_SAFE_INTEGER,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const total = this.total + chunk.length;
    if (total > this.cap) return done(new SizeCapError(capMessage(this.cap)));
    if (total > this.declared) return done(new ZipError('the zip member is larger than declared'));
    this.total = total;
    this.crc = crc32(chunk, this.crc);
    done(null, chunk);
  }
}

function capMessage(cap: number): string {
  return (
    `The decompressed image is larger than the size cap of ${cap} bytes; ` +
    'decompression was stopped at the cap'
  );
}

/**
 * The user-facing reason: the cap message as is, a file system failure by its code only (its
 * message names server paths), anything else as what is wrong with the archive.
 */
function describe(error: unknown, archive: 'gzip' | 'zip'): Error {
  if (error instanceof SizeCapError) return new Error(error.message);
  if (error instanceof ZipError) {
    return new Error(`The image could not be decompressed: ${error.message}`, { cause: error });
  }
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    return new Error(`The image could not be decompressed: staging failed (${code})`, {
      cause: error,
    });
  }
  const detail = error instanceof Error ? error.message : String(error);
  return new Error(`The image could not be decompressed: ${archive} data: ${detail}`, {
    cause: error,
  });
}
