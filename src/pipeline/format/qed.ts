/**
 * QED: recognised only so that it can be refused. No consumer supports it and its safety
 * cannot be judged, so it always fails the `banned` check.
 */
import type { SafetyCheck } from './common.js';
import { bytesOf, hasBytes, RegionInspector } from './common.js';

const MAGIC = bytesOf('QED\x00');

export class QedInspector extends RegionInspector {
  readonly name = 'qed';

  constructor() {
    super(0, 512);
  }

  matches(): boolean {
    return this.region.complete && hasBytes(this.region.data, 0, MAGIC);
  }

  override safetyChecks(): SafetyCheck[] {
    return [{ name: 'banned', run: () => 'the QED format is not allowed' }];
  }
}
