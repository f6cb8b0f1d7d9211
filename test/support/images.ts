/**
 * Disk images for tests: real ones made by qemu-img (Debian qemu-utils), and hand-built ISO
 * bytes. Without qemu-img the suites that need it are skipped, except under CI (CI=true),
 * where they run and fail with a message saying what is missing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const MiB = 1024 * 1024;

export const QEMU_MISSING = 'qemu-img (Debian qemu-utils) is missing';

export const hasQemu = spawnSync('qemu-img', ['--version']).status === 0;

/** The `skip` option of a suite that needs qemu-img: false when it can (or must) run. */
export function qemuSkip(): string | false {
  if (hasQemu || process.env.CI === 'true') return false;
  return QEMU_MISSING;
}

/** A test that needs qemu-img: skipped without it, except under CI, where it fails instead. */
export function qemuTest(name: string, fn: () => void | Promise<void>): void {
  if (hasQemu) {
    test(name, fn);
  } else if (process.env.CI === 'true') {
    test(name, () => assert.fail(`${QEMU_MISSING}; it is required when CI=true`));
  } else {
    test(name, { skip: QEMU_MISSING }, () => {});
  }
}

export function qemuImg(...args: string[]): void {
  if (!hasQemu) assert.fail(`${QEMU_MISSING}; it is required when CI=true`);
  execFileSync('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The virtual size `qemu-img info` reports, probing the format unless one is given. */
export function qemuVirtualSize(path: string, format?: string): number {
  if (!hasQemu) assert.fail(`${QEMU_MISSING}; it is required when CI=true`);
  const args = ['info', '--output=json', ...(format ? ['-f', format] : []), path];
  const info = JSON.parse(execFileSync('qemu-img', args, { encoding: 'utf8' })) as {
    'virtual-size': number;
  };
  return info['virtual-size'];
}

/** A disk image made by qemu-img, and the disk_format Glance calls it. */
export interface QemuImage {
  readonly name: string;
  readonly diskFormat: string;
  /** qemu-img's name of the format. */
  readonly qemuFormat: string;
  readonly options: readonly string[];
}

/** One image per format Glance inspects, all converted from the same raw disk. */
export const QEMU_IMAGES: readonly QemuImage[] = [
  { name: 'disk.raw', diskFormat: 'raw', qemuFormat: 'raw', options: [] },
  { name: 'disk.qcow2', diskFormat: 'qcow2', qemuFormat: 'qcow2', options: [] },
  {
    name: 'sparse.vmdk',
    diskFormat: 'vmdk',
    qemuFormat: 'vmdk',
    options: ['-o', 'subformat=monolithicSparse'],
  },
  {
    name: 'stream.vmdk',
    diskFormat: 'vmdk',
    qemuFormat: 'vmdk',
    options: ['-o', 'subformat=streamOptimized'],
  },
  { name: 'disk.vhd', diskFormat: 'vhd', qemuFormat: 'vpc', options: [] },
  { name: 'disk.vhdx', diskFormat: 'vhdx', qemuFormat: 'vhdx', options: [] },
  { name: 'disk.vdi', diskFormat: 'vdi', qemuFormat: 'vdi', options: [] },
];

/**
 * Writes `disk.raw` into `dir`, a disk of `size` bytes with some non-zero content so that
 * converted images carry allocated clusters and grains, then converts it into every other
 * image of QEMU_IMAGES under its name.
 */
export function buildQemuImages(dir: string, size = 4 * MiB): void {
  const raw = Buffer.alloc(size);
  for (let i = 0; i < 64 * 1024; i++) raw[MiB + i] = (i * 7919) & 0xff;
  const rawPath = join(dir, 'disk.raw');
  writeFileSync(rawPath, raw);

  for (const image of QEMU_IMAGES) {
    if (image.name === 'disk.raw') continue;
    const path = join(dir, image.name);
    qemuImg('convert', '-f', 'raw', '-O', image.qemuFormat, ...image.options, rawPath, path);
  }
}

/** A qcow2 overlay whose backing file is `backing` (a raw image on this host). */
export function buildBackedQcow2(path: string, backing: string): Buffer {
  qemuImg('create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'raw', path);
  return readFileSync(path);
}

/** A qcow2 that keeps its guest data in the external file `dataFile`. */
export function buildExternalDataQcow2(path: string, dataFile: string): Buffer {
  qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${dataFile}`, path, '1M');
  return readFileSync(path);
}

/** Rewrites the embedded descriptor of a sparse VMDK in place, within its sectors. */
export function rewriteVmdkDescriptor(image: Buffer, edit: (text: string) => string): Buffer {
  const out = Buffer.from(image);
  const sectors = Number(out.readBigUInt64LE(36));
  const region = out.subarray(512, 512 + sectors * 512);
  const end = region.indexOf(0);
  const before = region.subarray(0, end === -1 ? region.length : end).toString('latin1');
  const text = edit(before);
  assert.notEqual(text, before, 'the descriptor edit must change something');
  assert.ok(text.length < region.length, 'edited descriptor must fit its sectors');

  region.fill(0);
  region.write(text, 'latin1');
  return out;
}

function writeAscii(buf: Uint8Array, at: number, text: string): void {
  buf.set(Buffer.from(text, 'latin1'), at);
}

/**
 * An ISO 9660 image of `blocks` 2 KiB blocks: empty system area, a primary volume descriptor
 * at 32 KiB and a set terminator. Its virtual size is `blocks * 2048`.
 */
export function buildIso(blocks: number): Buffer {
  const iso = Buffer.alloc(blocks * 2048);
  const pvd = iso.subarray(32 * 1024, 34 * 1024);
  pvd[0] = 1;
  writeAscii(pvd, 1, 'CD001');
  pvd[6] = 1;
  pvd.writeUInt32LE(blocks, 80);
  pvd.writeUInt32BE(blocks, 84);
  pvd.writeUInt16LE(2048, 128);
  pvd.writeUInt16BE(2048, 130);

  const terminator = iso.subarray(34 * 1024, 36 * 1024);
  terminator[0] = 255;
  writeAscii(terminator, 1, 'CD001');
  terminator[6] = 1;
  return iso;
}
