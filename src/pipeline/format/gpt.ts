/**
 * GPT and plain MBR disks, told apart from other data by the boot signature 55 AA at 510.
 * Only the (protective) MBR in the first sector is examined; the GPT header and entries are
 * not read. The virtual size is the byte count.
 */
import type { SafetyCheck } from './common.js';
import { RegionInspector } from './common.js';

const SECTOR = 512;
const PARTITION_TABLE = 446;
const PARTITION_ENTRY = 16;
const PROTECTIVE_TYPE = 0xee;

/** A FAT boot sector carries the same signature; its BIOS parameter block gives it away. */
const FAT_COUNT_AT = 0x10;
const FAT_MEDIA_AT = 0x15;
const FIXED_DISK_MEDIA = 0xf8;

interface PartitionEntry {
  boot: number;
  chs: [number, number, number];
  type: number;
  firstLba: number;
}

export class GptInspector extends RegionInspector {
  readonly name = 'gpt';

  constructor() {
    super(0, SECTOR);
  }

  matches(): boolean {
    if (!this.region.complete) return false;

    const data = this.region.data;
    const signed = data[510] === 0x55 && data[511] === 0xaa;
    const fat = data[FAT_COUNT_AT] === 2 && data[FAT_MEDIA_AT] === FIXED_DISK_MEDIA;
    return signed && !fat;
  }

  override virtualSize(total: number): bigint {
    return BigInt(total);
  }

  override safetyChecks(): SafetyCheck[] {
    return [{ name: 'mbr', run: () => checkPartitions(this.entries()) }];
  }

  private entries(): PartitionEntry[] {
    const data = this.region.data;
    const entries: PartitionEntry[] = [];
    for (let i = 0; i < 4; i++) {
      const at = PARTITION_TABLE + i * PARTITION_ENTRY;
      const e = data.subarray(at, at + PARTITION_ENTRY);
      const view = new DataView(e.buffer, e.byteOffset, e.byteLength);
      entries.push({
        boot: view.getUint8(0),
        chs: [view.getUint8(1), view.getUint8(2), view.getUint8(3)],
        type: view.getUint8(4),
        firstLba: view.getUint32(8, true),
      });
    }
    return entries;
  }
}

function checkPartitions(entries: PartitionEntry[]): string | null {
  const used: number[] = [];
  let protective = false;

  for (const [i, e] of entries.entries()) {
    if (e.boot !== 0x00 && e.boot !== 0x80) return `partition entry ${i} has an invalid boot flag`;
    if (e.type !== 0) used.push(i);
    if (e.type !== PROTECTIVE_TYPE) continue;

    protective = true;
    const [head, sector, cylinder] = e.chs;
    if (head !== 0 || sector !== 2 || cylinder !== 0) {
      return 'the protective partition does not start at CHS 0/0/2';
    }
    if (e.firstLba !== 1) return 'the protective partition does not start at LBA 1';
  }

  // A protective MBR exists to cover the whole disk; anything beside it is a disguise.
  if (protective && (used.length !== 1 || used[0] !== 0)) {
    return 'the protective MBR defines other partitions';
  }
  if (used.length === 0) return 'the MBR defines no partitions';
  return null;
}
