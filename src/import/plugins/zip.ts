/**
 * Just enough of the ZIP format (APPNOTE 6.3) to find the one member of a single-member
 * archive: the end-of-central-directory record (and its ZIP64 variant, since disk images are
 * routinely larger than 4 GiB), the member's central directory entry and its local header.
 * Every read is a few fixed-size header regions; the member data itself is left for the
 * caller to stream.
 */
import type { FileHandle } from 'node:fs/promises';

export interface ZipMember {
  /** Where the member's data starts in the archive. */
  readonly dataOffset: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  /** 0 = stored, 8 = deflated: the only two methods accepted. */
  readonly method: 0 | 8;
  readonly crc32: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const EOCD_LENGTH = 22;
const MAX_COMMENT = 0xffff;
const LOCATOR_SIGNATURE = 0x07064b50;
const LOCATOR_LENGTH = 20;
const EOCD64_SIGNATURE = 0x06064b50;
const EOCD64_LENGTH = 56;
const CENTRAL_SIGNATURE = 0x02014b50;
const CENTRAL_LENGTH = 46;
const LOCAL_SIGNATURE = 0x04034b50;
const LOCAL_LENGTH = 30;
const ZIP64_EXTRA = 0x0001;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

export class ZipError extends Error {}

interface Directory {
  entries: number;
  size: number;
  offset: number;
  /** Where the end records start: the central directory must end before it. */
  end: number;
}

interface CentralEntry {
  flags: number;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localOffset: number;
  name: string;
}

/** The single member of the archive open in `file`, of `fileSize` bytes. */
export async function singleMember(file: FileHandle, fileSize: number): Promise<ZipMember> {
  const directory = await readDirectory(file, fileSize);
  if (directory.entries !== 1) {
    throw new ZipError(
      `the zip archive holds ${directory.entries} members; only an archive with exactly one ` +
        'member can be imported',
    );
  }
  const entry = await readCentralEntry(file, directory);
  const method = checkEntry(entry);
  const dataOffset = await readLocalHeader(file, entry.localOffset);
  if (dataOffset + entry.compressedSize > directory.offset) {
    throw new ZipError('the zip member data overlaps the central directory');
  }
  return {
    dataOffset,
    compressedSize: entry.compressedSize,
    uncompressedSize: entry.uncompressedSize,
    method,
    crc32: entry.crc32,
  };
}

async function readDirectory(file: FileHandle, fileSize: number): Promise<Directory> {
  const tailLength = Math.min(fileSize, EOCD_LENGTH + MAX_COMMENT);
  const tailStart = fileSize - tailLength;
  const tail = await readAt(file, tailStart, tailLength);
  const at = findEocd(tail);
  if (at < 0) throw new ZipError('the zip archive has no end of central directory record');

  const eocdStart = tailStart + at;
  const locatorStart = eocdStart - LOCATOR_LENGTH;
  if (locatorStart >= 0) {
    const locator = await readAt(file, locatorStart, LOCATOR_LENGTH);
    if (locator.readUInt32LE(0) === LOCATOR_SIGNATURE) {
      return readDirectory64(file, u64(locator, 8), locatorStart);
    }
  }

  const eocd = tail.subarray(at, at + EOCD_LENGTH);
  if (eocd.readUInt16LE(4) !== 0 || eocd.readUInt16LE(6) !== 0) {
    throw new ZipError('multi-volume zip archives are not supported');
  }
  const entries = eocd.readUInt16LE(10);
  if (eocd.readUInt16LE(8) !== entries) {
    throw new ZipError('multi-volume zip archives are not supported');
  }
  return checkDirectory({
    entries,
    size: eocd.readUInt32LE(12),
    offset: eocd.readUInt32LE(16),
    end: eocdStart,
  });
}

/** The last record signature whose comment fits in what follows it. */
function findEocd(tail: Buffer): number {
  for (let at = tail.length - EOCD_LENGTH; at >= 0; at--) {
    if (tail.readUInt32LE(at) !== EOCD_SIGNATURE) continue;
    if (at + EOCD_LENGTH + tail.readUInt16LE(at + 20) <= tail.length) return at;
  }
  return -1;
}

async function readDirectory64(file: FileHandle, at: number, end: number): Promise<Directory> {
  if (at + EOCD64_LENGTH > end) throw new ZipError('the zip64 end record is out of place');
  const record = await readAt(file, at, EOCD64_LENGTH);
  if (record.readUInt32LE(0) !== EOCD64_SIGNATURE) {
    throw new ZipError('the zip64 end record is missing');
  }
  if (record.readUInt32LE(16) !== 0 || record.readUInt32LE(20) !== 0) {
    throw new ZipError('multi-volume zip archives are not supported');
  }
  const entries = u64(record, 32);
  if (u64(record, 24) !== entries) {
    throw new ZipError('multi-volume zip archives are not supported');
  }
  return checkDirectory({ entries, size: u64(record, 40), offset: u64(record, 48), end: at });
}

function checkDirectory(directory: Directory): Directory {
  if (directory.offset + directory.size > directory.end) {
    throw new ZipError('the zip central directory lies outside the archive');
  }
  return directory;
}

async function readCentralEntry(file: FileHandle, directory: Directory): Promise<CentralEntry> {
  if (directory.size < CENTRAL_LENGTH) throw new ZipError('the zip central directory is empty');
  const fixed = await readAt(file, directory.offset, CENTRAL_LENGTH);
  if (fixed.readUInt32LE(0) !== CENTRAL_SIGNATURE) {
    throw new ZipError('the zip central directory entry is corrupt');
  }
  const nameLength = fixed.readUInt16LE(28);
  const extraLength = fixed.readUInt16LE(30);
  if (CENTRAL_LENGTH + nameLength + extraLength > directory.size) {
    throw new ZipError('the zip central directory entry is truncated');
  }
  const variable = await readAt(file, directory.offset + CENTRAL_LENGTH, nameLength + extraLength);
  const entry: CentralEntry = {
    flags: fixed.readUInt16LE(8),
    method: fixed.readUInt16LE(10),
    crc32: fixed.readUInt32LE(16),
    compressedSize: fixed.readUInt32LE(20),
    uncompressedSize: fixed.readUInt32LE(24),
    localOffset: fixed.readUInt32LE(42),
    name: variable.subarray(0, nameLength).toString('latin1'),
  };
  applyZip64Extra(entry, variable.subarray(nameLength), fixed.readUInt16LE(34) === U16_MAX);
  return entry;
}

/**
 * Fields too large for 32 bits hold all ones and move to the ZIP64 extra field, in a fixed
 * order, each present only when its 32-bit slot overflowed.
 */
function applyZip64Extra(entry: CentralEntry, extra: Buffer, diskOverflow: boolean): void {
  const wanted = [entry.uncompressedSize, entry.compressedSize, entry.localOffset];
  if (!wanted.includes(U32_MAX) && !diskOverflow) return;

  const field = findExtra(extra, ZIP64_EXTRA);
  if (field === null) throw new ZipError('the zip64 extra field is missing');
  let at = 0;
  const next = (): number => {
    if (at + 8 > field.length) throw new ZipError('the zip64 extra field is truncated');
    const value = u64(field, at);
    at += 8;
    return value;
  };
  if (entry.uncompressedSize === U32_MAX) entry.uncompressedSize = next();
  if (entry.compressedSize === U32_MAX) entry.compressedSize = next();
  if (entry.localOffset === U32_MAX) entry.localOffset = next();
}

function findExtra(extra: Buffer, id: number): Buffer | null {
  for (let at = 0; at + 4 <= extra.length;) {
    const length = extra.readUInt16LE(at + 2);
    if (extra.readUInt16LE(at) === id) return extra.subarray(at + 4, at + 4 + length);
    at += 4 + length;
  }
  return null;
}

function checkEntry(entry: CentralEntry): 0 | 8 {
  if ((entry.flags & 0x1) !== 0) throw new ZipError('encrypted zip members are not supported');
  if (entry.name.endsWith('/')) throw new ZipError('the only zip member is a directory');
  if (entry.method === 0) {
    if (entry.compressedSize !== entry.uncompressedSize) {
      throw new ZipError('the stored zip member has inconsistent sizes');
    }
    return 0;
  }
  if (entry.method === 8) return 8;
  throw new ZipError(`zip compression method ${entry.method} is not supported`);
}

/** The offset of the member data, after its local header. */
async function readLocalHeader(file: FileHandle, at: number): Promise<number> {
  const header = await readAt(file, at, LOCAL_LENGTH);
  if (header.readUInt32LE(0) !== LOCAL_SIGNATURE) {
    throw new ZipError('the zip local file header is corrupt');
  }
  return at + LOCAL_LENGTH + header.readUInt16LE(26) + header.readUInt16LE(28);
}

/** Exactly `length` bytes at `position`, or a ZipError when the archive ends before. */
async function readAt(file: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new ZipError('the zip archive is truncated');
    filled += bytesRead;
  }
  return buffer;
}

function u64(buffer: Buffer, at: number): number {
  const value = buffer.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError('a zip64 field is too large');
  return Number(value);
}
