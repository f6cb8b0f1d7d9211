/**
 * Microsoft VHDX ([MS-VHDX]): little-endian structures linked by offsets and named by GUIDs.
 *
 * The virtual size is found in three hops, each captured as the stream reaches it: the region
 * table at 192 KiB names the metadata region; that region starts with a table of up to 2047
 * items; the "Virtual Disk Size" item points at a u64 inside the region. Each capture is capped
 * (64 KiB for each table, 8 bytes for the size) whatever lengths the headers state.
 */
import {
  bytesOf,
  FormatParseError,
  hasBytes,
  Inspector,
  Region,
  toOffset,
  u16le,
  u32le,
  u64le,
} from './common.js';

const IDENTIFIER = bytesOf('vhdxfile');

const REGION_TABLE_AT = 192 * 1024;
const TABLE_SIZE = 64 * 1024;
const TABLE_HEADER = { regions: 16, metadata: 32 };
const ENTRY_SIZE = 32;
const MAX_ENTRIES = 2047;

const REGION_TABLE_SIGNATURE = 0x69676572;
const METADATA_SIGNATURE = bytesOf('metadata');
const METADATA_REGION = '8B7CA206-4790-4B9A-B8FE-575F050F886E';
const VIRTUAL_DISK_SIZE = '2FA54224-CD1B-4876-B211-5DBED83BF4B8';

type Stage = 'regions' | 'metadata' | 'size' | 'done';

export class VhdxInspector extends Inspector {
  readonly name = 'vhdx';

  private readonly ident = new Region(0, IDENTIFIER.length);
  private readonly regionTable = new Region(REGION_TABLE_AT, TABLE_SIZE);
  private metadata: Region | null = null;
  private sizeField: Region | null = null;
  private stage: Stage = 'regions';

  push(chunk: Uint8Array, start: number): void {
    this.ident.capture(chunk, start);
    if (this.ident.complete && !this.matches()) {
      this.wantsData = false;
      return;
    }

    this.regionTable.capture(chunk, start);
    if (this.stage === 'regions' && this.regionTable.complete) this.openMetadata();

    if (this.metadata !== null && this.stage === 'metadata') {
      this.metadata.capture(chunk, start);
      this.readMetadataTable(this.metadata);
    }

    if (this.sizeField !== null && this.stage === 'size') {
      this.sizeField.capture(chunk, start);
      if (this.sizeField.complete) this.stage = 'done';
    }

    this.wantsData = this.stage !== 'done' && this.waiting();
  }

  matches(): boolean {
    return hasBytes(this.ident.data, 0, IDENTIFIER);
  }

  complete(): boolean {
    return this.ident.complete && this.regionTable.complete && this.stage === 'done';
  }

  override virtualSize(): bigint | null {
    if (this.sizeField === null || !this.sizeField.complete) return null;

    return u64le(this.sizeField.data, 0);
  }

  /** False once the region being waited for can no longer be filled. */
  private waiting(): boolean {
    if (this.stage === 'regions') return this.regionTable.open;
    if (this.stage === 'metadata') return this.metadata?.open ?? false;
    return this.sizeField?.open ?? false;
  }

  private openMetadata(): void {
    const data = this.regionTable.data;
    if (u32le(data, 0) !== REGION_TABLE_SIGNATURE) {
      throw new FormatParseError('VHDX region table signature not found');
    }

    const count = u32le(data, 8);
    if (count > MAX_ENTRIES) throw new FormatParseError('VHDX region table is too long');

    const at = findEntry(data, TABLE_HEADER.regions, count, METADATA_REGION);
    if (at === null) {
      // Without a metadata region there is no size to report, and nothing else to read.
      this.stage = 'done';
      return;
    }

    this.metadata = new Region(toOffset(u64le(data, at + 16)), TABLE_SIZE);
    this.stage = 'metadata';
  }

  private readMetadataTable(metadata: Region): void {
    const data = metadata.data;
    if (data.length < TABLE_HEADER.metadata) return;
    if (!hasBytes(data, 0, METADATA_SIGNATURE)) {
      throw new FormatParseError('VHDX metadata signature not found');
    }

    const count = u16le(data, 10);
    if (count > MAX_ENTRIES) throw new FormatParseError('VHDX metadata table is too long');
    if (data.length < TABLE_HEADER.metadata + count * ENTRY_SIZE) return;

    const at = findEntry(data, TABLE_HEADER.metadata, count, VIRTUAL_DISK_SIZE);
    if (at === null) {
      this.stage = 'done';
      return;
    }

    // Item offsets are relative to the metadata region; the item may already be buffered.
    const field = new Region(metadata.offset + u32le(data, at + 16), 8);
    field.capture(data, metadata.offset);
    this.sizeField = field;
    this.stage = field.complete ? 'done' : 'size';
  }
}

/** Offset of the table entry whose GUID is `guid`, or null. */
function findEntry(data: Uint8Array, first: number, count: number, guid: string): number | null {
  for (let i = 0; i < count; i++) {
    const at = first + i * ENTRY_SIZE;
    if (formatGuid(data, at) === guid) return at;
  }
  return null;
}

/** A Microsoft GUID: three little-endian groups, then eight bytes in order. */
function formatGuid(data: Uint8Array, at: number): string {
  const hex = (n: number, width: number): string => n.toString(16).padStart(width, '0');
  const view = new DataView(data.buffer, data.byteOffset + at, 16);
  const tail = Array.from(data.subarray(at + 8, at + 16), (b) => hex(b, 2)).join('');
  const groups = [
    hex(view.getUint32(0, true), 8),
    hex(view.getUint16(4, true), 4),
    hex(view.getUint16(6, true), 4),
    tail.slice(0, 4),
    tail.slice(4),
  ];
  return groups.join('-').toUpperCase();
}
