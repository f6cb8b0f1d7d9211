/**
 * QEMU qcow2: a big-endian header at offset 0 (qemu's docs/interop/qcow2.txt). The fields that
 * matter here are the magic `QFI\xfb`, the version at 4, the backing-file offset at 8, the
 * virtual size at 24 and, from version 3 on, the incompatible-feature bits at 0x48.
 */
import type { SafetyCheck } from './common.js';
import { bytesOf, hasBytes, RegionInspector, u32be, u64be } from './common.js';

const MAGIC = bytesOf('QFI\xfb');
const VERSION = 4;
const BACKING_FILE_OFFSET = 8;
const SIZE = 24;
const INCOMPATIBLE_FEATURES = 0x48;

/** Incompatible feature bit 2: guest data lives in a separate, named file. */
const EXTERNAL_DATA_FILE = 1n << 2n;

/** Bits 0-3 (dirty, corrupt, external data file, compression type) are understood. */
const KNOWN_INCOMPATIBLE = 0b1111n;

export class Qcow2Inspector extends RegionInspector {
  readonly name = 'qcow2';

  constructor() {
    super(0, 512);
  }

  matches(): boolean {
    return this.region.complete && hasBytes(this.region.data, 0, MAGIC);
  }

  override virtualSize(): bigint | null {
    return this.matches() ? u64be(this.region.data, SIZE) : null;
  }

  override safetyChecks(): SafetyCheck[] {
    return [
      { name: 'backing_file', run: () => this.checkBackingFile() },
      { name: 'data_file', run: () => this.checkDataFile() },
      { name: 'unknown_features', run: () => this.checkFeatures() },
    ];
  }

  private get version(): number {
    return u32be(this.region.data, VERSION);
  }

  /** The field only exists from version 3; version 2 headers end before it. */
  private get incompatibleFeatures(): bigint {
    return this.version >= 3 ? u64be(this.region.data, INCOMPATIBLE_FEATURES) : 0n;
  }

  private checkBackingFile(): string | null {
    const offset = u64be(this.region.data, BACKING_FILE_OFFSET);
    return offset === 0n ? null : 'the image has a backing file';
  }

  private checkDataFile(): string | null {
    const external = (this.incompatibleFeatures & EXTERNAL_DATA_FILE) !== 0n;
    return external ? 'the image keeps its data in an external data file' : null;
  }

  private checkFeatures(): string | null {
    const version = this.version;
    if (version !== 2 && version !== 3) return `unsupported qcow2 version ${version}`;

    const unknown = this.incompatibleFeatures & ~KNOWN_INCOMPATIBLE;
    return unknown === 0n ? null : 'the image sets unknown incompatible features';
  }
}
