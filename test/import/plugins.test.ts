/**
 * Import plugins on a staged file: decompression of gzip and zip (including a bomb stopped at
 * the size cap), conversion of real images made by qemu-img, and metadata injection. Archives
 * are built here byte by byte so that no test depends on a zip tool.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { crc32, createGzip, deflateRawSync, gzipSync } from 'node:zlib';

import type {
  ImportPlugin,
  PluginContext,
  PluginSettings,
  StagedData,
} from '../../src/import/plugins/index.js';
import {
  PLUGIN_NAMES,
  createPlugins,
  defaultPluginSettings,
  removePluginLeftovers,
} from '../../src/import/plugins/index.js';
import { hasQemu, qemuTest } from '../support/images.js';

const MiB = 1024 * 1024;

function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

interface QemuInfo {
  format: string;
  'virtual-size': number;
  'format-specific'?: { type: string; data: Record<string, unknown> };
}

function qemuInfo(path: string, format: string): QemuInfo {
  return JSON.parse(qemuImg('info', '-f', format, '--output=json', path)) as QemuInfo;
}

const anyone: PluginContext = { roles: ['member'], sizeCap: Number.MAX_SAFE_INTEGER };

function plugin(name: string, overrides: Partial<PluginSettings> = {}): ImportPlugin {
  const [created] = createPlugins([name], { ...defaultPluginSettings(), ...overrides });
  assert.ok(created);
  return created;
}

function staged(path: string, diskFormat: string | null, containerFormat = 'bare'): StagedData {
  return { path, diskFormat, containerFormat };
}

/** Some non-zero content so that images carry allocated clusters and grains. */
function sampleDisk(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i < 64 * 1024; i++) data[MiB + i] = (i * 7919) & 0xff;
  data.write('the end of the disk', size - 512);
  return data;
}

// ---------------------------------------------------------------------------------------------
// A minimal ZIP writer: local headers, central directory, end record, optionally ZIP64.

interface ZipInput {
  name: string;
  data: Buffer;
  method?: 0 | 8;
  crc?: number;
}

function zipArchive(members: ZipInput[], zip64 = false): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const member of members) {
    const method = member.method ?? 8;
    const body = method === 8 ? deflateRawSync(member.data) : member.data;
    const name = Buffer.from(member.name);
    const crc = member.crc ?? crc32(member.data);
    const sizes = { compressed: body.length, uncompressed: member.data.length, offset };

    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(zip64 ? 45 : 20, 4);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(zip64 ? 0xffffffff : body.length, 18);
    local.writeUInt32LE(zip64 ? 0xffffffff : member.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);
    offset += local.length + name.length + body.length;

    centrals.push(centralEntry(name, method, crc, sizes, zip64));
  }
  const directory = Buffer.concat(centrals);
  const end = endRecords(members.length, directory.length, offset, zip64);
  return Buffer.concat([...locals, directory, end]);
}

function centralEntry(
  name: Buffer,
  method: number,
  crc: number,
  sizes: { compressed: number; uncompressed: number; offset: number },
  zip64: boolean,
): Buffer {
  const extra = Buffer.alloc(zip64 ? 28 : 0);
  if (zip64) {
    extra.writeUInt16LE(0x0001, 0);
    extra.writeUInt16LE(24, 2);
    extra.writeBigUInt64LE(BigInt(sizes.uncompressed), 4);
    extra.writeBigUInt64LE(BigInt(sizes.compressed), 12);
    extra.writeBigUInt64LE(BigInt(sizes.offset), 20);
  }
  const entry = Buffer.alloc(46);
  entry.writeUInt32LE(0x02014b50, 0);
  entry.writeUInt16LE(zip64 ? 45 : 20, 4);
  entry.writeUInt16LE(zip64 ? 45 : 20, 6);
  entry.writeUInt16LE(method, 10);
  entry.writeUInt32LE(crc, 16);
  entry.writeUInt32LE(zip64 ? 0xffffffff : sizes.compressed, 20);
  entry.writeUInt32LE(zip64 ? 0xffffffff : sizes.uncompressed, 24);
  entry.writeUInt16LE(name.length, 28);
  entry.writeUInt16LE(extra.length, 30);
  entry.writeUInt32LE(zip64 ? 0xffffffff : sizes.offset, 42);
  return Buffer.concat([entry, name, extra]);
}

function endRecords(count: number, size: number, offset: number, zip64: boolean): Buffer {
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(zip64 ? 0xffff : count, 8);
  eocd.writeUInt16LE(zip64 ? 0xffff : count, 10);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : size, 12);
  eocd.writeUInt32LE(zip64 ? 0xffffffff : offset, 16);
  if (!zip64) return eocd;

  const record = Buffer.alloc(56);
  record.writeUInt32LE(0x06064b50, 0);
  record.writeBigUInt64LE(44n, 4);
  record.writeUInt16LE(45, 12);
  record.writeUInt16LE(45, 14);
  record.writeBigUInt64LE(BigInt(count), 24);
  record.writeBigUInt64LE(BigInt(count), 32);
  record.writeBigUInt64LE(BigInt(size), 40);
  record.writeBigUInt64LE(BigInt(offset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(offset + size), 8);
  locator.writeUInt32LE(1, 16);
  return Buffer.concat([record, locator, eocd]);
}

// ---------------------------------------------------------------------------------------------

describe('image_decompression', () => {
  let dir = '';
  const path = (name: string): string => join(dir, name);
  const decompress = plugin('image_decompression');
  const content = sampleDisk(3 * MiB);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'glimpse-decompress-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** Stages `data` as `name` and checks that nothing but the staged file is left after `fn`. */
  async function withStaged(name: string, data: Buffer, fn: (p: string) => Promise<void>) {
    await writeFile(path(name), data);
    try {
      await fn(path(name));
      assert.deepEqual(
        (await readdir(dir)).filter((n) => n.startsWith(name)),
        [name],
      );
    } finally {
      await rm(path(name), { force: true });
    }
  }

  async function refused(name: string, data: Buffer, message: RegExp): Promise<void> {
    await withStaged(name, data, async (p) => {
      await assert.rejects(decompress.run(staged(p, 'raw'), anyone), message);
      assert.ok((await readFile(p)).equals(data), 'the staged file is left as it was');
    });
  }

  test('replaces a gzip file by its content and reports the new size', async () => {
    await withStaged('gz', gzipSync(content), async (p) => {
      const outcome = await decompress.run(staged(p, 'raw'), anyone);
      assert.deepEqual(outcome, { size: content.length });
      assert.ok((await readFile(p)).equals(content));
    });
  });

  test('replaces a single-member zip by its member, deflated or stored', async () => {
    for (const method of [8, 0] as const) {
      const archive = zipArchive([{ name: 'disk.img', data: content, method }]);
      await withStaged(`zip${method}`, archive, async (p) => {
        const outcome = await decompress.run(staged(p, 'raw'), anyone);
        assert.deepEqual(outcome, { size: content.length });
        assert.ok((await readFile(p)).equals(content));
      });
    }
  });

  test('reads the ZIP64 records that archives of large images carry', async () => {
    const archive = zipArchive([{ name: 'disk.img', data: content }], true);
    await withStaged('zip64', archive, async (p) => {
      assert.deepEqual(await decompress.run(staged(p, 'raw'), anyone), { size: content.length });
      assert.ok((await readFile(p)).equals(content));
    });
  });

  test('refuses a zip with two members', async () => {
    const two = zipArchive([
      { name: 'a.img', data: content },
      { name: 'b.img', data: Buffer.from('second') },
    ]);
    await refused('two', two, /holds 2 members; only an archive with exactly one member/);
  });

  test('refuses damaged archives without leaving anything behind', async () => {
    const badCrc = zipArchive([{ name: 'disk.img', data: content, crc: 1234 }]);
    await refused('crc', badCrc, /could not be decompressed: the zip member is corrupt/);

    const gzip = gzipSync(content);
    const truncated = gzip.subarray(0, gzip.length - 100);
    await refused('truncated', truncated, /could not be decompressed: gzip data/);

    const noEnd = zipArchive([{ name: 'disk.img', data: content }]).subarray(0, 1000);
    await refused('noend', noEnd, /no end of central directory record/);
  });

  test('stops a gzip bomb at the size cap and removes its partial output', async () => {
    // 1 GiB of zeros, compressed while it is generated: about 1 MiB on disk, never in memory.
    const zeros = Buffer.alloc(MiB);
    const source = Readable.from(
      (function* () {
        for (let i = 0; i < 1024; i++) yield zeros;
      })(),
    );
    await pipeline(source, createGzip({ level: 9 }), createWriteStream(path('bomb')));
    const { size } = await stat(path('bomb'));
    assert.ok(size < 2 * MiB, `the bomb is ${size} bytes`);

    const cap = 8 * MiB;
    const context = { roles: [], sizeCap: cap };
    const started = Date.now();
    await assert.rejects(
      decompress.run(staged(path('bomb'), 'raw'), context),
      new RegExp(`larger than the size cap of ${cap} bytes; decompression was stopped at the cap`),
    );
    assert.ok(Date.now() - started < 10_000, 'the bomb was not inflated in full');
    assert.deepEqual(await readdir(dir), ['bomb']);
    assert.equal((await stat(path('bomb'))).size, size);
    await rm(path('bomb'));
  });

  test('refuses a zip member declared larger than the cap before inflating it', async () => {
    const archive = zipArchive([{ name: 'disk.img', data: content }]);
    await withStaged('large', archive, async (p) => {
      await assert.rejects(
        decompress.run(staged(p, 'raw'), { roles: [], sizeCap: MiB }),
        /larger than the size cap of 1048576 bytes/,
      );
    });
  });

  test('keeps an archive whose container_format is compressed', async () => {
    const archive = gzipSync(content);
    await withStaged('kept', archive, async (p) => {
      const outcome = await decompress.run(staged(p, 'raw', 'compressed'), anyone);
      assert.deepEqual(outcome, {});
      assert.ok((await readFile(p)).equals(archive));
    });
  });

  test('leaves data that is not compressed alone', async () => {
    await withStaged('plain', content, async (p) => {
      assert.deepEqual(await decompress.run(staged(p, 'raw'), anyone), {});
      assert.ok((await readFile(p)).equals(content));
    });
  });

  test('removes temporary files a killed process left beside the staged file', async () => {
    await writeFile(path('img'), 'x');
    await writeFile(path('img.plugin-tmp.decompress.0123456789ab'), 'y');
    await writeFile(path('img-other'), 'z');
    await removePluginLeftovers(path('img'));
    assert.deepEqual((await readdir(dir)).sort(), ['img', 'img-other']);
    await rm(path('img'));
    await rm(path('img-other'));
  });
});

// ---------------------------------------------------------------------------------------------

describe('image_conversion', () => {
  let dir = '';
  const path = (name: string): string => join(dir, name);
  const toRaw = plugin('image_conversion');
  const diskSize = 10 * MiB;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'glimpse-convert-'));
    await writeFile(path('disk.raw'), sampleDisk(diskSize));
    if (!hasQemu) return;

    const images: [string, string, string[]][] = [
      ['disk.qcow2', 'qcow2', []],
      ['sparse.vmdk', 'vmdk', ['-o', 'subformat=monolithicSparse']],
      ['stream.vmdk', 'vmdk', ['-o', 'subformat=streamOptimized']],
      ['disk.vhd', 'vpc', []],
    ];
    for (const [name, format, options] of images) {
      qemuImg('convert', '-f', 'raw', '-O', format, ...options, path('disk.raw'), path(name));
    }
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A copy of `name` as the staged file. */
  async function stage(name: string): Promise<string> {
    const target = path(`staged-${name}`);
    await copyFile(path(name), target);
    return target;
  }

  async function leftovers(): Promise<string[]> {
    return (await readdir(dir)).filter((name) => name.includes('plugin-tmp'));
  }

  const sources: [string, string, string][] = [
    ['disk.qcow2', 'qcow2', 'qcow2'],
    ['sparse.vmdk', 'vmdk', 'vmdk'],
    ['stream.vmdk', 'vmdk', 'vmdk'],
    ['disk.vhd', 'vhd', 'vpc'],
  ];
  for (const [name, diskFormat, driver] of sources) {
    qemuTest(`converts ${name} to raw, keeping its virtual size and data`, async () => {
      const virtualSize = qemuInfo(path(name), driver)['virtual-size'];
      const p = await stage(name);

      const outcome = await toRaw.run(staged(p, diskFormat, 'ovf'), anyone);

      const { size } = await stat(p);
      assert.deepEqual(outcome, {
        diskFormat: 'raw',
        containerFormat: 'bare',
        size,
        virtualSize,
      });
      const info = qemuInfo(p, 'raw');
      assert.equal(info.format, 'raw');
      assert.equal(info['virtual-size'], virtualSize);
      qemuImg('compare', '-q', '-f', driver, '-F', 'raw', path(name), p);
      assert.deepEqual(await leftovers(), []);
      await rm(p);
    });
  }

  qemuTest('converts raw to qcow2', async () => {
    const p = await stage('disk.raw');
    const outcome = await plugin('image_conversion', { conversionOutputFormat: 'qcow2' }).run(
      staged(p, 'raw'),
      anyone,
    );

    const info = qemuInfo(p, 'qcow2');
    assert.equal(info.format, 'qcow2');
    assert.equal(info['virtual-size'], diskSize);
    assert.deepEqual(outcome, {
      diskFormat: 'qcow2',
      containerFormat: 'bare',
      size: (await stat(p)).size,
      virtualSize: diskSize,
    });
    qemuImg('compare', '-q', '-f', 'raw', '-F', 'qcow2', path('disk.raw'), p);
    await rm(p);
  });

  qemuTest('converts qcow2 to a vmdk in one file', async () => {
    const p = await stage('disk.qcow2');
    const outcome = await plugin('image_conversion', { conversionOutputFormat: 'vmdk' }).run(
      staged(p, 'qcow2'),
      anyone,
    );

    const info = qemuInfo(p, 'vmdk');
    assert.equal(info.format, 'vmdk');
    assert.equal(info['virtual-size'], diskSize);
    // A create-type the importer accepts, with its data in this one file.
    assert.equal(info['format-specific']?.data['create-type'], 'monolithicSparse');
    assert.deepEqual(outcome, {
      diskFormat: 'vmdk',
      containerFormat: 'bare',
      size: (await stat(p)).size,
      virtualSize: diskSize,
    });
    qemuImg('compare', '-q', '-f', 'raw', '-F', 'vmdk', path('disk.raw'), p);
    assert.deepEqual(await leftovers(), []);
    await rm(p);
  });

  qemuTest('checks but does not convert an image already in the output format', async () => {
    const p = await stage('disk.qcow2');
    const converter = plugin('image_conversion', { conversionOutputFormat: 'qcow2' });
    assert.deepEqual(await converter.run(staged(p, 'qcow2'), anyone), { virtualSize: diskSize });
    assert.ok((await readFile(p)).equals(await readFile(path('disk.qcow2'))));
    await rm(p);
  });

  qemuTest('refuses a qcow2 with a backing file', async () => {
    const child = path('child.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', path('disk.raw'), '-F', 'raw', child);
    await assert.rejects(toRaw.run(staged(child, 'qcow2'), anyone), /backing_file/);
    await assert.rejects(toRaw.run(staged(child, 'raw'), anyone), /backing_file/);
    assert.deepEqual(await leftovers(), []);
    await rm(child);
  });

  qemuTest('refuses data that is not the declared disk_format', async () => {
    const p = await stage('disk.qcow2');
    await assert.rejects(
      toRaw.run(staged(p, 'vmdk'), anyone),
      /^Error: Image disk_format vmdk does not match stream data qcow2$/,
    );
    await assert.rejects(
      toRaw.run(staged(p, 'raw'), anyone),
      /^Error: Image disk_format raw does not match stream data qcow2$/,
    );
    await assert.rejects(toRaw.run(staged(p, null), anyone), /has no disk_format/);
    await rm(p);

    const raw = await stage('disk.raw');
    await assert.rejects(
      toRaw.run(staged(raw, 'qcow2'), anyone),
      /does not match stream data raw/,
    );
    await rm(raw);
  });

  qemuTest('refuses a monolithicFlat VMDK, whose data lives in another file', async () => {
    const descriptor = path('flat.vmdk');
    qemuImg('create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', descriptor, '1M');
    const allowAll = { vmdkAllowedTypes: ['monolithicFlat', 'monolithicSparse'] };
    for (const converter of [toRaw, plugin('image_conversion', allowAll)]) {
      await assert.rejects(converter.run(staged(descriptor, 'vmdk'), anyone), /createType/);
    }
    assert.deepEqual(await leftovers(), []);
  });

  qemuTest('refuses a VMDK whose create-type qemu-img reports as not allowed', async () => {
    const p = await stage('sparse.vmdk');
    const converter = plugin('image_conversion', { vmdkAllowedTypes: ['streamOptimized'] });
    await assert.rejects(
      converter.run(staged(p, 'vmdk'), anyone),
      /^Error: VMDK create-type monolithicSparse is not allowed \(allowed: streamOptimized\)$/,
    );
    await rm(p);
  });

  qemuTest('refuses a raw output larger than the size cap before converting', async () => {
    const p = await stage('disk.qcow2');
    await assert.rejects(
      toRaw.run(staged(p, 'qcow2'), { roles: [], sizeCap: MiB }),
      /would be 10485760 bytes, more than the size cap of 1048576 bytes/,
    );
    assert.deepEqual(await leftovers(), []);
    assert.ok((await readFile(p)).equals(await readFile(path('disk.qcow2'))));
    await rm(p);
  });

  test('keeps an ISO declared iso as it is and refuses one declared otherwise', async () => {
    const iso = Buffer.alloc(64 * 1024);
    iso[32 * 1024] = 1;
    iso.write('CD001', 32 * 1024 + 1, 'latin1');
    iso.writeUInt32LE(32, 32 * 1024 + 80);
    iso.writeUInt16LE(2048, 32 * 1024 + 128);
    await writeFile(path('image.iso'), iso);

    assert.deepEqual(await toRaw.run(staged(path('image.iso'), 'iso'), anyone), {});
    await assert.rejects(
      toRaw.run(staged(path('image.iso'), 'raw'), anyone),
      /disk_format raw does not match its data, an ISO image/,
    );
    await rm(path('image.iso'));
  });

  test('reports a missing qemu-img as the reason', async () => {
    const p = await stage('disk.raw');
    const converter = plugin('image_conversion', { qemuImgPath: join(dir, 'no-qemu-img') });
    await assert.rejects(converter.run(staged(p, 'raw'), anyone), (error: Error) => {
      assert.match(error.message, /^qemu-img could not inspect the image: /);
      assert.ok(!error.message.includes(p), 'no server path in the message');
      return true;
    });
    await rm(p);
  });
});

// ---------------------------------------------------------------------------------------------

describe('inject_image_metadata', () => {
  const settings = {
    injectProperties: { hw_vif_model: 'virtio', os_glance_import_task: 'x', owner_team: 'ops' },
    injectIgnoreUserRoles: ['admin', 'service'],
  };
  const inject = plugin('inject_image_metadata', settings);
  const nothing = staged('/nonexistent', null);

  test('adds the configured properties, without reserved os_glance keys', async () => {
    const outcome = await inject.run(nothing, anyone);
    assert.deepEqual(outcome, { properties: { hw_vif_model: 'virtio', owner_team: 'ops' } });
  });

  test('adds nothing for a user with an ignored role', async () => {
    const context = { roles: ['member', 'service'], sizeCap: 0 };
    assert.deepEqual(await inject.run(nothing, context), {});
    const admin = plugin('inject_image_metadata', { injectProperties: { a: 'b' } });
    assert.deepEqual(await admin.run(nothing, { roles: ['admin'], sizeCap: 0 }), {});
  });

  test('adds nothing when nothing is configured', async () => {
    assert.deepEqual(await plugin('inject_image_metadata').run(nothing, anyone), {});
  });
});

describe('createPlugins', () => {
  test('creates the named plugins in the configured order', () => {
    const names = ['inject_image_metadata', 'image_decompression', 'image_conversion'];
    const plugins = createPlugins(names, defaultPluginSettings());
    assert.deepEqual(
      plugins.map((p) => p.name),
      names,
    );
    assert.deepEqual([...PLUGIN_NAMES].sort(), [...names].sort());
  });

  test('throws for an unknown plugin name', () => {
    for (const name of ['no_such_plugin', 'toString', '']) {
      assert.throws(
        () => createPlugins(['image_decompression', name], defaultPluginSettings()),
        /Unknown image import plugin/,
      );
    }
  });

  test('throws for an output format qemu-img is not allowed to write', () => {
    const settings = { ...defaultPluginSettings(), conversionOutputFormat: 'vhd' as 'raw' };
    assert.throws(() => createPlugins(['image_conversion'], settings), /output_format/);
  });
});
