/**
 * LUKS encrypted volumes: a big-endian header that starts with `LUKS\xba\xbe` and a version.
 * Only version 1 is understood (as by qemu). No passphrase is ever supplied here, so the
 * payload is not decrypted and the format inside it is not inspected.
 */
import type { SafetyCheck } from './common.js';
import { bytesOf, hasBytes, RegionInspector, u16be } from './common.js';

const MAGIC = bytesOf('LUKS\xba\xbe');
const VERSION = 6;

/** The fixed part of the header plus its eight key-slot descriptors. */
const HEADER_SIZE = 592;

export class LuksInspector extends RegionInspector {
  readonly name = 'luks';

  constructor() {
    super(0, HEADER_SIZE);
  }

  matches(): boolean {
    return hasBytes(this.region.data, 0, MAGIC);
  }

  override safetyChecks(): SafetyCheck[] {
    return [{ name: 'version', run: () => this.checkVersion() }];
  }

  private checkVersion(): string | null {
    const version = u16be(this.region.data, VERSION);
    return version === 1 ? null : `LUKS version ${version} is not supported`;
  }
}
