/**
 * Raw: the fallback when no other format recognises the data. Every byte is disk content, so
 * the virtual size is the byte count and there is nothing to check.
 */
import { Inspector } from './common.js';

export class RawInspector extends Inspector {
  readonly name = 'raw';

  constructor() {
    super();
    this.wantsData = false;
  }

  push(): void {}

  matches(): boolean {
    return true;
  }

  complete(): boolean {
    return true;
  }

  override virtualSize(total: number): bigint {
    return BigInt(total);
  }
}
