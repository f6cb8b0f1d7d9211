/**
 * What an import leaves behind, checked the same way by every suite that imports: the
 * image's bookkeeping properties, its staged and partial files, and the default file store.
 * Also direct access to the app's metadata database, for states the API cannot create.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Kysely } from 'kysely';

import { openDialect } from '../../src/db/sql/database.js';
import type { Tables } from '../../src/db/sql/tables.js';
import type { TestApp } from './app.js';

export const LOCK = 'os_glance_import_task';
export const IMPORTING_TO = 'os_glance_importing_to_stores';
export const FAILED_IMPORT = 'os_glance_failed_import';

/** An image as GET /v2/images/{id} shows it. */
export type ImageView = Record<string, unknown> & { id: string; status: string };

async function entries(dir: string, id: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((name) => name === id || name.startsWith(`${id}.`)).map((n) => join(dir, n));
}

/**
 * Files of the image in staging (staged, partial, or a plugin's temporary file) and partial
 * files in the default store.
 */
export async function importLeftovers(t: TestApp, id: string): Promise<string[]> {
  const staging = join(t.dataDir, 'staging');
  return [
    ...(await entries(staging, id)),
    ...(await entries(join(staging, '.partial'), id)),
    ...(await entries(join(t.dataDir, 'images', '.partial'), id)),
  ];
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The image is active, its size and hashes those of data. */
export function assertActiveWith(image: ImageView, data: Buffer, message?: string): void {
  const hash = (algorithm: string, bytes: Buffer) =>
    createHash(algorithm).update(bytes).digest('hex');
  assert.equal(image.status, 'active', message);
  assert.equal(image.size, data.length);
  assert.equal(image.checksum, hash('md5', data));
  assert.equal(image.os_hash_algo, 'sha512');
  assert.equal(image.os_hash_value, hash('sha512', data));
}

/** The bookkeeping an import leaves on an image, whatever its outcome. */
export function assertImportBookkeeping(image: ImageView): void {
  assert.equal(image[LOCK], undefined, `the import lock is still held: ${JSON.stringify(image)}`);
  assert.equal(image[IMPORTING_TO], '');
  assert.equal(image[FAILED_IMPORT], '');
}

/**
 * A failed import into a queued image: queued again, without data or hashes, the lock
 * released, nothing left in staging and nothing in the (default, file) store.
 */
export async function assertImportUndone(t: TestApp, image: ImageView): Promise<void> {
  assert.equal(image.status, 'queued');
  assert.equal(image.size, null);
  assert.equal(image.checksum, null);
  assert.equal(image.os_hash_value, null);
  assertImportBookkeeping(image);
  assert.deepEqual(await importLeftovers(t, image.id), []);
  assert.equal(await exists(join(t.dataDir, 'images', image.id)), false, 'nothing was stored');
}

/** Runs `use` on a connection of its own to the app's metadata database. */
export async function withDatabase<T>(
  t: TestApp,
  use: (db: Kysely<Tables>) => Promise<T>,
): Promise<T> {
  const dialect = await openDialect({ url: t.databaseUrl, dataDir: t.dataDir, poolSize: 1 });
  const db = new Kysely<Tables>({ dialect: dialect.kysely });
  try {
    return await use(db);
  } finally {
    await db.destroy();
  }
}
