/**
 * VHD (qemu's "vpc"): dynamic and differencing images start with a copy of the 512-byte
 * big-endian footer, whose cookie is `conectix` and whose current size sits at offset 40.
 * Fixed images only carry the footer at the end and are indistinguishable from raw here.
 */
import { bytesOf, hasBytes, RegionInspector, u64be } from './common.js';

const COOKIE = bytesOf('conectix');
const CURRENT_SIZE = 40;

export class VhdInspector extends RegionInspector {
  readonly name = 'vhd';

  constructor() {
    super(0, 512);
  }

  matches(): boolean {
    return hasBytes(this.region.data, 0, COOKIE);
  }

  override virtualSize(): bigint | null {
    if (!this.region.complete) return null;

    return u64be(this.region.data, CURRENT_SIZE);
  }
}
