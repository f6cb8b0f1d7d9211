/**
 * Starting a data write changes the image's status and records the write in one transaction:
 * a process that dies in between must not leave an image `saving` that no write record lets
 * the recovery of dead writers find.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { transition, type ImageRecord } from '../../src/domain/image.js';
import type { DataWrite, MetadataRepositories } from '../../src/db/repository.js';
import { openRepositories } from '../../src/db/sql/database.js';
import { testDatabases } from '../support/databases.js';
import { queuedImage } from '../support/image-records.js';

function saving(image: ImageRecord): ImageRecord {
  return { ...image, ...transition(image, 'saving'), updated_at: new Date().toISOString() };
}

function upload(imageId: string): DataWrite {
  return { imageId, kind: 'upload', workerId: 'worker-1' };
}

for (const database of await testDatabases()) {
  describe(`data write claims on ${database.name}`, { skip: database.skip ?? false }, () => {
    let db: Awaited<ReturnType<typeof database.create>>;
    let dataDir: string;
    let repositories: MetadataRepositories;

    before(async () => {
      db = await database.create();
      dataDir = mkdtempSync(join(tmpdir(), 'glimpse-claim-'));
      repositories = await openRepositories({ url: db.url, dataDir, poolSize: 2 });
      await repositories.migrate();
    });
    after(async () => {
      await repositories?.close();
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('records the write with the status change', async () => {
      const image = queuedImage(randomUUID());
      await repositories.images.create(image);

      assert.equal(await repositories.images.save(image, saving(image), upload(image.id)), true);

      assert.equal((await repositories.images.get(image.id))?.status, 'saving');
      assert.deepEqual(await repositories.writes.get(image.id), upload(image.id));
    });

    it('records nothing when another write claimed the image first', async () => {
      const image = queuedImage(randomUUID());
      await repositories.images.create(image);
      await repositories.images.save(image, saving(image));

      const claimed = await repositories.images.save(image, saving(image), upload(image.id));

      assert.equal(claimed, false);
      assert.equal(await repositories.writes.get(image.id), null);
    });

    it('records the write with a change checked against the usage', async () => {
      const image = queuedImage(randomUUID());
      await repositories.images.create(image);
      const accept = () => undefined;

      const claimed = await repositories.images.saveChecked(
        image,
        saving(image),
        'alice',
        accept,
        upload(image.id),
      );

      assert.equal(claimed, true);
      assert.deepEqual(await repositories.writes.get(image.id), upload(image.id));
    });

    it('records nothing when the usage check refuses', async () => {
      const image = queuedImage(randomUUID());
      await repositories.images.create(image);
      const refuse = () => {
        throw new Error('over the limit');
      };

      const claim = repositories.images.saveChecked(
        image,
        saving(image),
        'alice',
        refuse,
        upload(image.id),
      );

      await assert.rejects(claim, /over the limit/);
      assert.equal((await repositories.images.get(image.id))?.status, 'queued');
      assert.equal(await repositories.writes.get(image.id), null);
    });
  });
}
