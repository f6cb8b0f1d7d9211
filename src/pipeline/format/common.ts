/**
 * Building blocks shared by the per-format inspectors: byte regions captured from a stream,
 * a rolling tail, little helpers to read header fields, and the inspector base class.
 *
 * Everything here keeps memory bounded by construction. A region has a fixed maximum length
 * chosen by the inspector (never taken verbatim from a header) and grows its buffer only as
 * bytes actually arrive, so a header that points a petabyte into the file costs nothing.
 */

export type DetectedFormat =
  'raw' | 'qcow2' | 'qed' | 'vhd' | 'vhdx' | 'vmdk' | 'vdi' | 'iso' | 'gpt' | 'luks';

/** Thrown by an inspector that finds the data is not (a parseable) instance of its format. */
export class FormatParseError extends Error {}

/** One named safety check: returns why it failed, or null when the image passes it. */
export interface SafetyCheck {
  readonly name: string;
  run(): string | null;
}

const EMPTY = new Uint8Array(0);

/** Initial buffer of a region; it doubles up to the region length as data arrives. */
const INITIAL_CAPACITY = 4096;

/**
 * A contiguous byte range of the stream, captured across arbitrary chunk boundaries.
 *
 * The region only ever copies the bytes that belong to it. If it was created after part of its
 * range had already streamed past, it can never be filled and stays incomplete (`missed`).
 */
export class Region {
  private buf: Uint8Array = EMPTY;
  private filled = 0;
  private missedStart = false;

  constructor(
    readonly offset: number,
    readonly length: number,
  ) {}

  get complete(): boolean {
    return this.filled === this.length;
  }

  /** True when the start of the range went by before the region existed. */
  get missed(): boolean {
    return this.missedStart;
  }

  /** True when later chunks can still change the region. */
  get open(): boolean {
    return !this.complete && !this.missedStart;
  }

  get data(): Uint8Array {
    return this.buf.subarray(0, this.filled);
  }

  /** Takes what belongs to the region from `chunk`, which starts at stream offset `start`. */
  capture(chunk: Uint8Array, start: number): void {
    if (!this.open) return;

    const want = this.offset + this.filled;
    if (start + chunk.length <= want) return;
    if (start > want) {
      this.missedStart = true;
      return;
    }

    const from = want - start;
    const count = Math.min(this.length - this.filled, chunk.length - from);
    this.reserve(this.filled + count);
    this.buf.set(chunk.subarray(from, from + count), this.filled);
    this.filled += count;
  }

  private reserve(size: number): void {
    if (size <= this.buf.length) return;

    let capacity = Math.max(this.buf.length * 2, INITIAL_CAPACITY);
    while (capacity < size) capacity *= 2;

    const grown = new Uint8Array(Math.min(capacity, this.length));
    grown.set(this.data);
    this.buf = grown;
  }
}

/** The last `size` bytes of the stream, for formats that keep a footer at the end. */
export class RollingTail {
  private readonly buf: Uint8Array;
  private held = 0;

  constructor(readonly size: number) {
    this.buf = new Uint8Array(size);
  }

  get data(): Uint8Array {
    return this.buf.subarray(0, this.held);
  }

  push(chunk: Uint8Array): void {
    const size = this.size;
    if (chunk.length >= size) {
      this.buf.set(chunk.subarray(chunk.length - size));
      this.held = size;
      return;
    }

    // Slide the bytes that stay to the front, then append the chunk behind them.
    const keep = Math.min(this.held, size - chunk.length);
    this.buf.copyWithin(0, this.held - keep, this.held);
    this.buf.set(chunk, keep);
    this.held = keep + chunk.length;
  }
}

// ---------------------------------------------------------------------------------------------
// Field readers. They throw RangeError on short input; callers only read complete regions,
// and the stream wrapper treats any throw as "this inspector cannot parse the data".

function view(data: Uint8Array): DataView {
  return new DataView(data.buffer, data.byteOffset, data.byteLength);
}

export function u16le(data: Uint8Array, at: number): number {
  return view(data).getUint16(at, true);
}

export function u16be(data: Uint8Array, at: number): number {
  return view(data).getUint16(at, false);
}

export function u32le(data: Uint8Array, at: number): number {
  return view(data).getUint32(at, true);
}

export function u32be(data: Uint8Array, at: number): number {
  return view(data).getUint32(at, false);
}

export function u64le(data: Uint8Array, at: number): bigint {
  return view(data).getBigUint64(at, true);
}

export function u64be(data: Uint8Array, at: number): bigint {
  return view(data).getBigUint64(at, false);
}

/** True when `data` holds `magic` at `at` (false when `data` is too short). */
export function hasBytes(data: Uint8Array, at: number, magic: Uint8Array): boolean {
  if (data.length < at + magic.length) return false;

  for (let i = 0; i < magic.length; i++) {
    if (data[at + i] !== magic[i]) return false;
  }
  return true;
}

export function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/**
 * A header value used as a stream offset. Offsets past what a number holds exactly can never
 * be reached by a real stream, so they are clamped to a value that is never reached either.
 */
export function toOffset(value: bigint): number {
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  return Number(value > max ? max : value);
}

// ---------------------------------------------------------------------------------------------

/**
 * A streaming inspector for one format. The stream wrapper feeds it chunks while `wantsData`
 * is true, calls `end()` once, and then asks the questions below. Any exception thrown by
 * `push()` or `end()` removes the inspector from the candidates.
 */
export abstract class Inspector {
  abstract readonly name: DetectedFormat;

  /** Turned off once no later byte can change the outcome, so the stream stops feeding it. */
  wantsData = true;

  /** Feeds a chunk that starts at stream offset `start`. */
  abstract push(chunk: Uint8Array, start: number): void;

  /** Marks the end of the stream, `total` bytes long. */
  end(_total: number): void {
    this.wantsData = false;
  }

  /** True when the data looks like this format. */
  abstract matches(): boolean;

  /** True when every region the checks and the size depend on was captured. */
  abstract complete(): boolean;

  /** The disk size the image presents, or null when unknown. */
  virtualSize(_total: number): bigint | null {
    return null;
  }

  safetyChecks(): SafetyCheck[] {
    return [];
  }
}

/** An inspector that only needs one fixed region, usually the first sector. */
export abstract class RegionInspector extends Inspector {
  protected readonly region: Region;

  constructor(offset: number, length: number) {
    super();
    this.region = new Region(offset, length);
  }

  push(chunk: Uint8Array, start: number): void {
    this.region.capture(chunk, start);
    if (!this.region.open) this.wantsData = false;
  }

  complete(): boolean {
    return this.region.complete;
  }
}
