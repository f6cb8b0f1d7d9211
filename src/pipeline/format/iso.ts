/**
 * ISO 9660 and UDF: the first 16 sectors of 2 KiB are a free-form system area (where hybrid
 * images put an MBR or GPT), and the first volume descriptor follows at 32 KiB.
 */
import { bytesOf, hasBytes, RegionInspector, u16le, u32le } from './common.js';

const DESCRIPTOR_AT = 32 * 1024;
const DESCRIPTOR_SIZE = 2048;
const IDENTIFIERS = ['CD001', 'NSR02', 'NSR03'].map(bytesOf);
const PRIMARY_VOLUME_DESCRIPTOR = 1;

/** Both fields are stored twice (little- then big-endian); the little-endian half suffices. */
const VOLUME_SPACE_SIZE = 80;
const LOGICAL_BLOCK_SIZE = 128;

export class IsoInspector extends RegionInspector {
  readonly name = 'iso';

  constructor() {
    super(DESCRIPTOR_AT, DESCRIPTOR_SIZE);
  }

  matches(): boolean {
    if (!this.region.complete) return false;

    return IDENTIFIERS.some((id) => hasBytes(this.region.data, 1, id));
  }

  override virtualSize(): bigint | null {
    const data = this.region.data;
    if (!this.region.complete || data[0] !== PRIMARY_VOLUME_DESCRIPTOR) return null;

    const blocks = BigInt(u32le(data, VOLUME_SPACE_SIZE));
    return blocks * BigInt(u16le(data, LOGICAL_BLOCK_SIZE));
  }
}
