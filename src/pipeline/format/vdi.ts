/**
 * VirtualBox VDI: a 512-byte little-endian header with the signature 0xBEDA107F at 0x40 and
 * the disk size at 0x170.
 */
import { RegionInspector, u32le, u64le } from './common.js';

const SIGNATURE = 0xbeda107f;
const SIGNATURE_AT = 0x40;
const DISK_SIZE = 0x170;

export class VdiInspector extends RegionInspector {
  readonly name = 'vdi';

  constructor() {
    super(0, 512);
  }

  matches(): boolean {
    return this.region.complete && u32le(this.region.data, SIGNATURE_AT) === SIGNATURE;
  }

  override virtualSize(): bigint | null {
    if (!this.region.complete) return null;

    return u64le(this.region.data, DISK_SIZE);
  }
}
