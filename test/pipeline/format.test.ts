/**
 * Streaming format inspection: real images made by qemu-img, hand-built ISO/GPT/LUKS headers,
 * and hostile or broken headers. Every image is fed in odd-sized chunks so that header fields
 * straddle chunk boundaries.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { FormatVerdict } from '../../src/pipeline/format/index.js';
import { createFormatInspector } from '../../src/pipeline/format/index.js';
import { hasQemu, qemuImg, qemuTest, qemuVirtualSize } from '../support/images.js';

const MiB = 1024 * 1024;
const ODD_CHUNK = 4093;

interface InspectOptions {
  chunk?: number;
  gptSafetyChecksNonfatal?: string[];
}

function inspect(data: Uint8Array, declared: string, opts: InspectOptions = {}): FormatVerdict {
  const inspector = createFormatInspector({
    gptSafetyChecksNonfatal: opts.gptSafetyChecksNonfatal,
  });
  const size = opts.chunk ?? ODD_CHUNK;
  for (let at = 0; at < data.length; at += size) {
    inspector.push(data.subarray(at, at + size));
  }
  return inspector.finish(declared);
}

function assertAccepted(
  verdict: FormatVerdict,
  detected: string,
  virtualSize: number | null,
): asserts verdict is Extract<FormatVerdict, { ok: true }> {
  assert.equal(verdict.ok, true, JSON.stringify(verdict));
  assert.equal(verdict.detected, detected);
  assert.equal(verdict.virtualSize, virtualSize);
}

function assertRejected(verdict: FormatVerdict, reason: string, message: RegExp): void {
  assert.equal(verdict.ok, false, JSON.stringify(verdict));
  assert.equal(verdict.reason, reason);
  assert.match(verdict.message, message);
}

// ---------------------------------------------------------------------------------------------
// Hand-built images

function writeAscii(buf: Uint8Array, at: number, text: string): void {
  buf.set(Buffer.from(text, 'latin1'), at);
}

/** An ISO 9660 image: empty system area, primary volume descriptor, set terminator. */
function buildIso(blocks: number): Uint8Array {
  const iso = new Uint8Array(blocks * 2048);
  const pvd = Buffer.from(iso.buffer, 32 * 1024, 2048);
  pvd[0] = 1;
  writeAscii(pvd, 1, 'CD001');
  pvd[6] = 1;
  pvd.writeUInt32LE(blocks, 80);
  pvd.writeUInt32BE(blocks, 84);
  pvd.writeUInt16LE(2048, 128);
  pvd.writeUInt16BE(2048, 130);

  const terminator = Buffer.from(iso.buffer, 34 * 1024, 2048);
  terminator[0] = 255;
  writeAscii(terminator, 1, 'CD001');
  terminator[6] = 1;
  return iso;
}

interface MbrEntry {
  boot?: number;
  type: number;
  chs?: [number, number, number];
  firstLba: number;
  sectors: number;
}

function writeMbr(disk: Uint8Array, entries: MbrEntry[]): void {
  const mbr = Buffer.from(disk.buffer, disk.byteOffset, 512);
  for (const [i, e] of entries.entries()) {
    const at = 446 + i * 16;
    mbr[at] = e.boot ?? 0;
    mbr.set(e.chs ?? [0, 2, 0], at + 1);
    mbr[at + 4] = e.type;
    mbr.set([0xff, 0xff, 0xff], at + 5);
    mbr.writeUInt32LE(e.firstLba, at + 8);
    mbr.writeUInt32LE(e.sectors, at + 12);
  }
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
}

/** A GPT disk: protective MBR, then a primary header at LBA 1 (contents beyond it are blank). */
function buildGpt(sectors: number, extra: MbrEntry[] = []): Uint8Array {
  const disk = new Uint8Array(sectors * 512);
  writeMbr(disk, [{ type: 0xee, firstLba: 1, sectors: sectors - 1 }, ...extra]);

  const header = Buffer.from(disk.buffer, 512, 512);
  writeAscii(header, 0, 'EFI PART');
  header.writeUInt32LE(0x00010000, 8);
  header.writeUInt32LE(92, 12);
  header.writeBigUInt64LE(1n, 24);
  header.writeBigUInt64LE(BigInt(sectors - 1), 32);
  header.writeBigUInt64LE(34n, 40);
  header.writeBigUInt64LE(BigInt(sectors - 34), 48);
  header.writeBigUInt64LE(2n, 72);
  header.writeUInt32LE(128, 80);
  header.writeUInt32LE(128, 84);
  return disk;
}

function buildLuksHeader(version: number, size: number): Uint8Array {
  const luks = Buffer.alloc(size);
  writeAscii(luks, 0, 'LUKS\xba\xbe');
  luks.writeUInt16BE(version, 6);
  writeAscii(luks, 8, 'aes');
  writeAscii(luks, 40, 'xts-plain64');
  writeAscii(luks, 72, 'sha256');
  luks.writeUInt32BE(4096, 104);
  luks.writeUInt32BE(64, 108);
  return luks;
}

/** Rewrites the embedded descriptor of a sparse VMDK in place, within its sectors. */
function rewriteDescriptor(image: Buffer, edit: (text: string) => string): Buffer {
  const out = Buffer.from(image);
  const sectors = Number(out.readBigUInt64LE(36));
  const region = out.subarray(512, 512 + sectors * 512);
  const end = region.indexOf(0);
  const text = edit(region.subarray(0, end === -1 ? region.length : end).toString('latin1'));
  assert.ok(text.length < region.length, 'edited descriptor must fit its sectors');

  region.fill(0);
  region.write(text, 'latin1');
  return out;
}

/**
 * Moves the grain directory pointer of a stream-optimized VMDK into a footer, the way VMware
 * writes streams: the header says "at end", and the file ends with footer marker, footer
 * (a header copy with the real pointer) and end-of-stream marker.
 */
function withFooter(image: Buffer, tamper?: (tail: Buffer) => void): Buffer {
  const header = image.subarray(0, 512);
  const tail = Buffer.alloc(1536);
  tail.writeBigUInt64LE(1n, 0);
  tail.writeUInt32LE(3, 12);
  header.copy(tail, 512);
  tamper?.(tail);

  const out = Buffer.concat([image, tail]);
  out.writeBigUInt64LE(0xffffffffffffffffn, 56);
  return out;
}

function arrayBuffersGrowth(fn: () => void): number {
  const before = process.memoryUsage().arrayBuffers;
  fn();
  return process.memoryUsage().arrayBuffers - before;
}

// ---------------------------------------------------------------------------------------------

describe('format inspection of qemu-img images', () => {
  let dir = '';
  const path = (name: string): string => join(dir, name);
  const read = (name: string): Buffer => readFileSync(path(name));

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glimpse-format-'));
    if (!hasQemu) return;

    // Some non-zero content so that converted images carry allocated clusters and grains.
    const raw = Buffer.alloc(10 * MiB);
    for (let i = 0; i < 64 * 1024; i++) raw[MiB + i] = (i * 7919) & 0xff;
    writeFileSync(path('disk.raw'), raw);

    const conversions: [string, string, string[]][] = [
      ['disk.qcow2', 'qcow2', []],
      ['disk-v2.qcow2', 'qcow2', ['-o', 'compat=0.10']],
      ['sparse.vmdk', 'vmdk', ['-o', 'subformat=monolithicSparse']],
      ['stream.vmdk', 'vmdk', ['-o', 'subformat=streamOptimized']],
      ['disk.vhd', 'vpc', []],
      ['disk.vhdx', 'vhdx', []],
      ['disk.vdi', 'vdi', []],
    ];
    for (const [name, format, opts] of conversions) {
      qemuImg('convert', '-f', 'raw', '-O', format, ...opts, path('disk.raw'), path(name));
    }
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string, string, string, string | undefined][] = [
    ['disk.raw', 'raw', 'raw', 'raw'],
    ['disk.qcow2', 'qcow2', 'qcow2', undefined],
    ['disk-v2.qcow2', 'qcow2', 'qcow2', undefined],
    ['sparse.vmdk', 'vmdk', 'vmdk', undefined],
    ['stream.vmdk', 'vmdk', 'vmdk', undefined],
    ['disk.vhd', 'vhd', 'vhd', undefined],
    ['disk.vhdx', 'vhdx', 'vhdx', undefined],
    ['disk.vdi', 'vdi', 'vdi', undefined],
  ];
  for (const [name, declared, detected, qemuFormat] of cases) {
    qemuTest(`detects ${name} and reports qemu-img's virtual size`, () => {
      const expected = qemuVirtualSize(path(name), qemuFormat);
      for (const chunk of [ODD_CHUNK, 65537, 3 * MiB + 1]) {
        assertAccepted(inspect(read(name), declared, { chunk }), detected, expected);
      }
    });
  }

  qemuTest('gives the same verdict when a qcow2 arrives one byte at a time', () => {
    const expected = qemuVirtualSize(path('disk.qcow2'));
    const head = read('disk.qcow2').subarray(0, 256 * 1024);
    assertAccepted(inspect(head, 'qcow2', { chunk: 1 }), 'qcow2', expected);
  });

  qemuTest('refuses a qcow2 with a backing file, also when declared raw', () => {
    qemuImg('create', '-q', '-f', 'qcow2', '-b', path('disk.raw'), '-F', 'raw', path('child'));

    assertRejected(inspect(read('child'), 'qcow2'), 'unsafe', /safety checks: backing_file/);
    assertRejected(inspect(read('child'), 'raw'), 'unsafe', /backing_file/);
  });

  qemuTest('refuses a qcow2 that keeps its data in an external file', () => {
    const opts = `data_file=${path('external.bin')}`;
    qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, path('external.qcow2'), '1M');

    assertRejected(inspect(read('external.qcow2'), 'qcow2'), 'unsafe', /data_file/);
  });

  qemuTest('refuses a qcow2 with unknown incompatible features or version', () => {
    const features = Buffer.from(read('disk.qcow2'));
    features.writeUInt8(features.readUInt8(0x4f) | 0x20, 0x4f);
    assertRejected(inspect(features, 'qcow2'), 'unsafe', /unknown_features/);

    const version = Buffer.from(read('disk.qcow2'));
    version.writeUInt32BE(4, 4);
    assertRejected(inspect(version, 'qcow2'), 'unsafe', /unknown_features/);
  });

  qemuTest('accepts a safe qcow2 declared raw with a warning and the byte count', () => {
    const data = read('disk.qcow2');
    const verdict = inspect(data, 'raw');

    assertAccepted(verdict, 'qcow2', data.length);
    assert.match(verdict.warning ?? '', /qcow2/);
  });

  qemuTest('reports a mismatch when the declared format is another one', () => {
    const verdict = inspect(read('disk.qcow2'), 'vmdk');
    assertRejected(
      verdict,
      'mismatch',
      /^Image disk_format vmdk does not match stream data qcow2$/,
    );

    const ami = inspect(read('disk.qcow2'), 'ami');
    assertRejected(ami, 'mismatch', /^Image disk_format ami does not match stream data qcow2$/);
  });

  qemuTest('refuses a VMDK whose extent points outside the image', () => {
    const outside = rewriteDescriptor(read('sparse.vmdk'), (text) =>
      text.replace(/"sparse\.vmdk"/, '"/etc/passwd"'),
    );
    assertRejected(inspect(outside, 'vmdk'), 'unsafe', /descriptor \(.*path/);
    assertRejected(inspect(outside, 'raw'), 'unsafe', /descriptor/);
  });

  qemuTest('refuses a monolithicFlat VMDK descriptor', () => {
    qemuImg(
      'create',
      '-q',
      '-f',
      'vmdk',
      '-o',
      'subformat=monolithicFlat',
      path('flat.vmdk'),
      '1M',
    );

    assertRejected(inspect(read('flat.vmdk'), 'vmdk'), 'unsafe', /descriptor/);
    assertRejected(inspect(read('flat.vmdk'), 'raw'), 'unsafe', /descriptor/);

    const retyped = rewriteDescriptor(read('sparse.vmdk'), (text) =>
      text.replace('monolithicSparse', 'monolithicFlat'),
    );
    assertRejected(inspect(retyped, 'vmdk'), 'unsafe', /createType/);
  });

  qemuTest('refuses a bare descriptor even when it claims a sparse type', () => {
    const text = read('flat.vmdk')
      .toString('latin1')
      .replace('monolithicFlat', 'monolithicSparse')
      .replace('FLAT "flat-flat.vmdk" 0', 'SPARSE "neighbour.vmdk"');
    assertRejected(inspect(Buffer.from(text), 'vmdk'), 'unsafe', /outside the image/);
  });

  qemuTest(
    'refuses VMDK descriptors with unknown lines, no extents or a second createType',
    () => {
      const sparse = read('sparse.vmdk');
      const unknown = rewriteDescriptor(sparse, (t) => `${t}include other.vmdk\n`);
      assertRejected(inspect(unknown, 'vmdk'), 'unsafe', /unknown kind/);

      const noExtent = rewriteDescriptor(sparse, (t) => t.replace(/^RW .*$/m, ''));
      assertRejected(inspect(noExtent, 'vmdk'), 'unsafe', /no extents/);

      const hidden = rewriteDescriptor(sparse, (t) => `#createType="monolithicFlat"\n${t}`);
      assertRejected(inspect(hidden, 'vmdk'), 'unsafe', /createType/);
    },
  );

  qemuTest('checks the footer of a stream-optimized VMDK', () => {
    writeFileSync(path('footer.vmdk'), withFooter(read('stream.vmdk')));
    const expected = qemuVirtualSize(path('footer.vmdk'));
    for (const chunk of [ODD_CHUNK, 511, 1536]) {
      assertAccepted(inspect(read('footer.vmdk'), 'vmdk', { chunk }), 'vmdk', expected);
    }

    const badEos = withFooter(read('stream.vmdk'), (tail) => tail.writeUInt32LE(7, 1024 + 12));
    assertRejected(inspect(badEos, 'vmdk'), 'unsafe', /footer \(.*end-of-stream/);

    const badVersion = withFooter(read('stream.vmdk'), (tail) => tail.writeUInt32LE(1, 512 + 4));
    assertRejected(inspect(badVersion, 'vmdk'), 'unsafe', /footer/);

    const cut = withFooter(read('stream.vmdk')).subarray(0, 1024);
    assertRejected(inspect(cut, 'vmdk'), 'invalid', /truncated/);
  });

  qemuTest('refuses QED', () => {
    qemuImg('create', '-q', '-f', 'qed', path('disk.qed'), '1M');
    assertRejected(inspect(read('disk.qed'), 'raw'), 'unsafe', /banned/);
  });
});

describe('format inspection of hand-built images', () => {
  test('detects an ISO 9660 image and its volume size', () => {
    const iso = buildIso(40);
    assertAccepted(inspect(iso, 'iso'), 'iso', 40 * 2048);
    assertAccepted(inspect(iso, 'iso', { chunk: 7 }), 'iso', 40 * 2048);
  });

  test('treats a hybrid ISO with an MBR in its system area as ISO', () => {
    const iso = buildIso(40);
    writeMbr(iso, [{ boot: 0x80, type: 0x17, firstLba: 0, sectors: 40 * 4 }]);
    assertAccepted(inspect(iso, 'iso'), 'iso', 40 * 2048);
  });

  test('detects a GPT disk, sized by its byte count', () => {
    const gpt = buildGpt(2048);
    assertAccepted(inspect(gpt, 'gpt'), 'gpt', gpt.length);

    const asRaw = inspect(gpt, 'raw');
    assertAccepted(asRaw, 'gpt', gpt.length);
    assert.match(asRaw.warning ?? '', /gpt/);
  });

  qemuTest("matches qemu-img's size for the hand-built ISO and GPT", () => {
    const dir = mkdtempSync(join(tmpdir(), 'glimpse-format-'));
    try {
      writeFileSync(join(dir, 'x.iso'), buildIso(40));
      writeFileSync(join(dir, 'x.gpt'), buildGpt(2048));
      assert.equal(qemuVirtualSize(join(dir, 'x.iso'), 'raw'), 40 * 2048);
      assert.equal(qemuVirtualSize(join(dir, 'x.gpt'), 'raw'), 2048 * 512);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('refuses a protective MBR hiding another partition unless the check is non-fatal', () => {
    const gpt = buildGpt(2048, [{ type: 0x83, chs: [1, 1, 0], firstLba: 64, sectors: 100 }]);
    assertRejected(inspect(gpt, 'raw'), 'unsafe', /safety checks: mbr/);

    const tolerated = inspect(gpt, 'raw', { gptSafetyChecksNonfatal: ['mbr'] });
    assertAccepted(tolerated, 'gpt', gpt.length);
    assert.match(tolerated.warning ?? '', /mbr/);
  });

  test('refuses an MBR with a bad boot flag, a misplaced protective entry or no entries', () => {
    const flag = buildGpt(64);
    flag[446] = 0x7f;
    assertRejected(inspect(flag, 'gpt'), 'unsafe', /boot flag/);

    const lba = buildGpt(64);
    Buffer.from(lba.buffer).writeUInt32LE(2, 446 + 8);
    assertRejected(inspect(lba, 'gpt'), 'unsafe', /LBA 1/);

    const empty = new Uint8Array(64 * 512);
    writeMbr(empty, []);
    assertRejected(inspect(empty, 'gpt'), 'unsafe', /no partitions/);
  });

  test('does not mistake a FAT boot sector for an MBR', () => {
    const fat = new Uint8Array(64 * 1024);
    writeMbr(fat, []);
    fat[0x10] = 2;
    fat[0x15] = 0xf8;
    assertAccepted(inspect(fat, 'raw'), 'raw', fat.length);
  });

  test('accepts LUKS version 1 and refuses other versions', () => {
    assertAccepted(inspect(buildLuksHeader(1, 8192), 'luks'), 'luks', null);
    assertRejected(inspect(buildLuksHeader(2, 8192), 'raw'), 'unsafe', /version/);
  });

  test('reports a mismatch for raw data declared qcow2', () => {
    const verdict = inspect(new Uint8Array(MiB), 'qcow2');
    assertRejected(
      verdict,
      'mismatch',
      /^Image disk_format qcow2 does not match stream data raw$/,
    );
  });

  test('accepts raw data declared as a format that cannot be inspected', () => {
    for (const declared of ['ami', 'ari', 'aki', 'ploop']) {
      assertAccepted(inspect(new Uint8Array(MiB), declared), 'raw', null);
    }
  });

  test('refuses data that matches several formats', () => {
    const both = new Uint8Array(MiB);
    writeAscii(both, 0, 'QFI\xfb');
    both[7] = 3;
    writeMbr(both, [{ type: 0x83, firstLba: 1, sectors: 100 }]);
    assertRejected(inspect(both, 'qcow2'), 'invalid', /^Multiple formats detected: qcow2, gpt$/);
  });

  test('handles empty and tiny streams', () => {
    assertAccepted(inspect(new Uint8Array(0), 'raw'), 'raw', null);
    assertAccepted(inspect(Buffer.from('KD'), 'raw'), 'raw', 2);
    assertRejected(inspect(Buffer.from('conectix'), 'vhd'), 'invalid', /truncated/);
    assertRejected(inspect(Buffer.from('vhdxfile'), 'vhdx'), 'invalid', /truncated/);
  });

  test('counts every byte of a long stream without copying it', () => {
    const chunk = new Uint8Array(MiB);
    const inspector = createFormatInspector();
    const growth = arrayBuffersGrowth(() => {
      for (let i = 0; i < 2048; i++) inspector.push(chunk);
    });
    assertAccepted(inspector.finish('raw'), 'raw', 2048 * MiB);
    assert.ok(growth < 4 * MiB, `inspection kept ${growth} bytes`);
  });

  test('refuses push() after finish()', () => {
    const inspector = createFormatInspector();
    inspector.finish('raw');
    assert.throws(() => inspector.push(new Uint8Array(1)));
  });
});

describe('format inspection of hostile headers', () => {
  /** Inspects without throwing, and without holding on to more than `limit` new bytes. */
  function inspectBounded(data: Uint8Array, declared: string, limit = 2 * MiB): FormatVerdict {
    let verdict: FormatVerdict | undefined;
    const growth = arrayBuffersGrowth(() => {
      verdict = inspect(data, declared);
    });
    assert.ok(growth < limit, `inspection kept ${growth} bytes`);
    assert.ok(verdict !== undefined);
    return verdict;
  }

  function vhdxSkeleton(): Buffer {
    const vhdx = Buffer.alloc(4 * MiB);
    writeAscii(vhdx, 0, 'vhdxfile');
    const table = 192 * 1024;
    writeAscii(vhdx, table, 'regi');
    vhdx.writeUInt32LE(1, table + 8);
    // Metadata region GUID 8B7CA206-4790-4B9A-B8FE-575F050F886E, then its offset.
    Buffer.from('06a27c8b90479a4bb8fe575f050f886e', 'hex').copy(vhdx, table + 16);
    vhdx.writeBigUInt64LE(BigInt(MiB), table + 32);

    writeAscii(vhdx, MiB, 'metadata');
    vhdx.writeUInt16LE(1, MiB + 10);
    // Virtual Disk Size GUID 2FA54224-CD1B-4876-B211-5DBED83BF4B8, then offset and length.
    Buffer.from('2442a52f1bcd7648b2115dbed83bf4b8', 'hex').copy(vhdx, MiB + 32);
    vhdx.writeUInt32LE(64 * 1024, MiB + 48);
    vhdx.writeUInt32LE(8, MiB + 52);
    vhdx.writeBigUInt64LE(BigInt(64 * 1024 * MiB), MiB + 64 * 1024);
    return vhdx;
  }

  test('reads the size of a minimal VHDX through region and metadata tables', () => {
    assertAccepted(inspectBounded(vhdxSkeleton(), 'vhdx'), 'vhdx', 64 * 1024 * MiB);
  });

  test('drops a VHDX whose tables claim absurd entry counts', () => {
    const regions = vhdxSkeleton();
    regions.writeUInt32LE(0xffffffff, 192 * 1024 + 8);
    assertRejected(inspectBounded(regions, 'vhdx'), 'mismatch', /stream data raw/);

    const items = vhdxSkeleton();
    items.writeUInt16LE(0xffff, MiB + 10);
    assertRejected(inspectBounded(items, 'vhdx'), 'mismatch', /stream data raw/);
  });

  test('never reaches VHDX structures placed petabytes away', () => {
    const far = vhdxSkeleton();
    far.writeBigUInt64LE(1n << 52n, 192 * 1024 + 32);
    assertRejected(inspectBounded(far, 'vhdx'), 'invalid', /truncated/);

    const farther = vhdxSkeleton();
    farther.writeBigUInt64LE(0xfffffffffffffff0n, 192 * 1024 + 32);
    assertRejected(inspectBounded(farther, 'raw'), 'invalid', /truncated/);

    const item = vhdxSkeleton();
    item.writeUInt32LE(0xffffffff, MiB + 48);
    item.writeUInt32LE(0xffffffff, MiB + 52);
    assertRejected(inspectBounded(item, 'vhdx'), 'invalid', /truncated/);
  });

  function sparseVmdkHeader(): Buffer {
    const vmdk = Buffer.alloc(64 * 1024);
    writeAscii(vmdk, 0, 'KDMV');
    vmdk.writeUInt32LE(1, 4);
    vmdk.writeBigUInt64LE(2048n, 12);
    vmdk.writeBigUInt64LE(1n, 28);
    vmdk.writeBigUInt64LE(1n, 36);
    const descriptor = 'createType="monolithicSparse"\nRW 2048 SPARSE "x.vmdk"\n';
    writeAscii(vmdk, 512, descriptor);
    return vmdk;
  }

  test('caps a VMDK descriptor that claims to be enormous', () => {
    assertAccepted(inspectBounded(sparseVmdkHeader(), 'vmdk'), 'vmdk', 2048 * 512);

    const huge = sparseVmdkHeader();
    huge.writeBigUInt64LE(1n << 60n, 36);
    assertRejected(inspectBounded(huge, 'vmdk'), 'invalid', /truncated/);

    const wrapped = sparseVmdkHeader();
    wrapped.writeBigUInt64LE(0xffffffffffffffffn, 36);
    assertRejected(inspectBounded(wrapped, 'raw'), 'invalid', /truncated/);
  });

  test('drops a VMDK with an unknown version or a misplaced descriptor', () => {
    const version = sparseVmdkHeader();
    version.writeUInt32LE(9, 4);
    assertRejected(inspectBounded(version, 'vmdk'), 'mismatch', /stream data raw/);

    const moved = sparseVmdkHeader();
    moved.writeBigUInt64LE(1n << 55n, 28);
    assertRejected(inspectBounded(moved, 'vmdk'), 'mismatch', /stream data raw/);
  });

  test('refuses a sparse VMDK without capacity, which defers to its extents', () => {
    const empty = sparseVmdkHeader();
    empty.writeBigUInt64LE(0n, 12);
    assertRejected(inspectBounded(empty, 'vmdk'), 'unsafe', /capacity/);
  });

  test('reports an unrepresentable qcow2 size as unknown', () => {
    const qcow2 = Buffer.alloc(64 * 1024);
    writeAscii(qcow2, 0, 'QFI\xfb');
    qcow2.writeUInt32BE(3, 4);
    qcow2.writeBigUInt64BE(1n << 62n, 24);
    const verdict = inspectBounded(qcow2, 'qcow2');
    assertAccepted(verdict, 'qcow2', null);
    assert.match(verdict.warning ?? '', /too large/);
  });

  test('treats random bytes and truncated headers as raw or truncated', () => {
    let seed = 12345;
    const noise = Buffer.alloc(2 * MiB);
    for (let i = 0; i < noise.length; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      noise[i] = seed >>> 24;
    }
    noise[510] = 0;
    assertAccepted(inspectBounded(noise, 'raw'), 'raw', noise.length);

    const shortQcow2 = Buffer.from('QFI\xfb\x00\x00\x00\x03', 'latin1');
    assertRejected(inspectBounded(shortQcow2, 'qcow2'), 'mismatch', /stream data raw/);
    assertRejected(inspectBounded(Buffer.from('KDMV\x01'), 'vmdk'), 'invalid', /truncated/);
    assertRejected(
      inspectBounded(buildLuksHeader(1, 8192).subarray(0, 100), 'raw'),
      'invalid',
      /truncated/,
    );
  });
});
