/**
 * VMware VMDK, in the two single-file variants that are safe to accept: monolithicSparse and
 * streamOptimized. Both start with a little-endian "hosted sparse extent" header (magic `KDMV`)
 * and embed a text descriptor at sector 1. A VMDK can also be a bare text descriptor whose
 * extent lines name other files; those are detected so that they can be refused.
 *
 * The descriptor is what qemu follows to open extents, so it is parsed cautiously: every line
 * must be of a known kind, and extent lines must not contain paths. Stream-optimized images
 * may move the grain directory into a footer at the end of the file; then the footer and the
 * end-of-stream marker (the last 1536 bytes, kept in a rolling tail) are checked as well.
 */
import type { SafetyCheck } from './common.js';
import {
  bytesOf,
  FormatParseError,
  hasBytes,
  Inspector,
  Region,
  RollingTail,
  u32le,
  u64le,
} from './common.js';

const MAGIC = bytesOf('KDMV');
const SECTOR = 512;
const HEADER = { version: 4, capacity: 12, descOffset: 28, descSize: 36, gdOffset: 56 };

/** Where qemu expects the embedded descriptor, and the most of it that qemu reads. */
const DESCRIPTOR_AT = 0x200;
const DESCRIPTOR_MAX = (1 << 20) - 1;

const GD_AT_END = 0xffffffffffffffffn;
const FOOTER_SPAN = 3 * SECTOR;
const MARKER = { footer: 3, endOfStream: 0 };

const ALLOWED_TYPES = ['monolithicsparse', 'streamoptimized'];
const EXTENT_ACCESS = ['rw', 'rdonly', 'noaccess'];

/** Longer createType values are not real ones; refusing them also bounds what is echoed. */
const MAX_TYPE_LENGTH = 64;

type Layout = 'unknown' | 'sparse' | 'text' | 'other';

interface Descriptor {
  /** Lowercased, as VMDK descriptors are case-insensitive. */
  text: string;
  createType: string | null;
}

export class VmdkInspector extends Inspector {
  readonly name = 'vmdk';

  private readonly head = new Region(0, SECTOR);
  private layout: Layout = 'unknown';
  private descriptorRegion: Region | null = null;
  private descriptor: Descriptor | null = null;
  private parsed = false;

  /** Kept until the header says whether a footer exists, and after that only if it does. */
  private tail: RollingTail | null = new RollingTail(FOOTER_SPAN);

  push(chunk: Uint8Array, start: number): void {
    this.tail?.push(chunk);

    if (this.layout === 'unknown') {
      this.head.capture(chunk, start);
      if (this.head.complete) this.chooseLayout();
    }

    const region = this.descriptorRegion;
    if (region !== null && !this.parsed) {
      region.capture(chunk, start);
      if (this.layout === 'sparse' && region.complete) this.parse(region);
    }

    const capturing = region !== null && region.open;
    this.wantsData = this.layout === 'unknown' || this.tail !== null || capturing;
  }

  override end(total: number): void {
    super.end(total);

    // A stream shorter than one sector still gets a verdict from what it has.
    if (this.layout === 'unknown') this.chooseLayout();
    if (this.layout === 'text' && this.descriptorRegion !== null) {
      this.parse(this.descriptorRegion);
    }
  }

  matches(): boolean {
    if (this.layout === 'sparse') return true;
    if (this.layout === 'text') return this.descriptor?.createType != null;
    return false;
  }

  complete(): boolean {
    if (this.layout === 'text') return this.parsed;
    if (this.layout !== 'sparse' || !this.head.complete) return false;

    const footerReady = this.tail === null || this.tail.data.length === FOOTER_SPAN;
    return this.descriptorRegion?.complete === true && footerReady;
  }

  override virtualSize(): bigint | null {
    if (this.layout !== 'sparse' || !this.head.complete) return null;
    if (!this.descriptor?.text || !isAllowedType(this.descriptor.createType)) return null;

    return u64le(this.head.data, HEADER.capacity) * BigInt(SECTOR);
  }

  override safetyChecks(): SafetyCheck[] {
    const checks: SafetyCheck[] = [{ name: 'descriptor', run: () => this.checkDescriptor() }];
    if (this.tail !== null) checks.push({ name: 'footer', run: () => this.checkFooter() });
    return checks;
  }

  private chooseLayout(): void {
    const head = this.head.data;
    if (hasBytes(head, 0, MAGIC)) {
      this.layout = 'sparse';
      if (this.head.complete) this.openSparse(head);
      return;
    }

    this.tail = null;
    if (head.length >= 4 && isText(head)) {
      // Without a binary header the whole file is the descriptor (qemu reads up to 1 MiB).
      this.layout = 'text';
      this.descriptorRegion = new Region(0, DESCRIPTOR_MAX);
      this.descriptorRegion.capture(head, 0);
      return;
    }
    this.layout = 'other';
  }

  private openSparse(head: Uint8Array): void {
    const version = u32le(head, HEADER.version);
    if (version < 1 || version > 3) throw new FormatParseError('unsupported VMDK version');

    const descOffset = u64le(head, HEADER.descOffset) * BigInt(SECTOR);
    if (descOffset !== BigInt(DESCRIPTOR_AT)) {
      throw new FormatParseError('VMDK descriptor is not at sector 1');
    }

    const descSize = u64le(head, HEADER.descSize) * BigInt(SECTOR);
    const length = descSize < DESCRIPTOR_MAX ? Number(descSize) : DESCRIPTOR_MAX;
    this.descriptorRegion = new Region(DESCRIPTOR_AT, length);
    if (u64le(head, HEADER.gdOffset) !== GD_AT_END) this.tail = null;
  }

  private parse(region: Region): void {
    this.parsed = true;
    this.descriptor = parseDescriptor(region.data);
  }

  private checkDescriptor(): string | null {
    const desc = this.descriptor;
    if (desc === null || desc.text === '') return 'no readable descriptor found';
    if (!isAllowedType(desc.createType)) return 'createType is not an allowed single-file type';

    const problem = checkTypeMentions(desc.text) ?? checkLines(desc.text);
    if (problem !== null) return problem;

    // A bare descriptor always points at other files, and a sparse header with no capacity
    // makes qemu open the embedded descriptor's extents instead of the image itself.
    if (this.layout === 'text') return 'a descriptor-only VMDK refers to files outside the image';
    if (u64le(this.head.data, HEADER.capacity) === 0n) {
      return 'a sparse header without capacity defers to external extents';
    }
    return null;
  }

  private checkFooter(): string | null {
    const tail = this.tail?.data ?? new Uint8Array(0);
    const head = this.head.data;
    const footer = tail.subarray(SECTOR, 2 * SECTOR);

    if (!hasBytes(footer, 0, MAGIC)) return 'the footer signature does not match the header';
    if (u32le(footer, HEADER.version) !== u32le(head, HEADER.version)) {
      return 'the footer version does not match the header';
    }

    const sameDescriptor = [HEADER.descOffset, HEADER.descSize].every(
      (at) => u64le(footer, at) === u64le(head, at),
    );
    if (!sameDescriptor) return 'the footer names a different descriptor than the header';
    if (u64le(footer, HEADER.gdOffset) === GD_AT_END) return 'the footer defers to another footer';

    if (!isMarker(tail.subarray(0, SECTOR), MARKER.footer, false)) {
      return 'the footer marker is invalid';
    }
    if (!isMarker(tail.subarray(2 * SECTOR), MARKER.endOfStream, true)) {
      return 'the end-of-stream marker is invalid';
    }
    return null;
  }
}

function isAllowedType(type: string | null): boolean {
  return type !== null && ALLOWED_TYPES.includes(type);
}

/** Printable ASCII and whitespace only: what a text descriptor file consists of. */
function isText(data: Uint8Array): boolean {
  for (const b of data) {
    const printable = b >= 0x20 && b < 0x7f;
    const space = (b >= 0x09 && b <= 0x0d) || (b >= 0x1c && b <= 0x1f);
    if (!printable && !space) return false;
  }
  return true;
}

/** A stream marker sector: value, zero size, the given type, then 496 zero bytes. */
function isMarker(sector: Uint8Array, type: number, zeroValue: boolean): boolean {
  if (sector.length !== SECTOR) return false;
  if (zeroValue && u64le(sector, 0) !== 0n) return false;
  if (u32le(sector, 8) !== 0 || u32le(sector, 12) !== type) return false;

  return sector.subarray(16).every((b) => b === 0);
}

function parseDescriptor(data: Uint8Array): Descriptor | null {
  // The embedded descriptor is NUL-padded to whole sectors.
  const nul = data.indexOf(0);
  const body = nul === -1 ? data : data.subarray(0, nul);
  if (body.some((b) => b > 0x7f)) return null;

  const text = Buffer.from(body.buffer, body.byteOffset, body.length)
    .toString('latin1')
    .toLowerCase();
  return { text, createType: readCreateType(text) };
}

function readCreateType(text: string): string | null {
  const key = 'createtype="';
  const at = text.indexOf(key);
  if (at === -1) return null;

  const from = at + key.length;
  const to = text.indexOf('"', from);
  if (to === -1 || to - from >= MAX_TYPE_LENGTH) return null;
  return text.slice(from, to);
}

/**
 * qemu takes the first "createType" anywhere in the text (case-sensitively), which need not be
 * the one read above; so every mention has to name an allowed type.
 */
function checkTypeMentions(text: string): string | null {
  const mention = /createtype/g;
  for (let m = mention.exec(text); m !== null; m = mention.exec(text)) {
    const rest = text.slice(m.index + m[0].length, m.index + m[0].length + MAX_TYPE_LENGTH);
    const allowed = ALLOWED_TYPES.some((type) => rest.startsWith(`="${type}"`));
    if (!allowed) return 'the descriptor mentions createType in an unexpected way';
  }
  return null;
}

/** Each line must be blank, a comment, a ddb entry, a `key=value` field or an extent. */
function checkLines(text: string): string | null {
  let extents = 0;

  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('ddb')) continue;

    const eq = line.indexOf('=');
    if (eq !== -1 && !line.slice(0, eq).includes(' ')) continue;

    const access = line.split(' ')[0] ?? '';
    if (!EXTENT_ACCESS.includes(access)) return 'the descriptor has a line of unknown kind';
    if (line.includes('/')) return 'an extent line names a file path';
    extents++;
  }

  return extents === 0 ? 'the descriptor defines no extents' : null;
}
