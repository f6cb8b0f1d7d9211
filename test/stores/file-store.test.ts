/**
 * The file store against the store conformance suite, in a temporary directory: with O_DIRECT
 * writes (the default, on a disk file system), through the page cache, and on tmpfs, which
 * refuses O_DIRECT and so takes the store's fallback.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { FileStore } from '../../src/stores/file/file-store.js';
import { describeStoreConformance } from './conformance.js';

const TMPFS = '/dev/shm';

function fileStoreTarget(parent: string, options: { directIo?: boolean } = {}) {
  return async () => {
    const root = await mkdtemp(join(parent, 'glimpse-file-store-'));
    const store = new FileStore({ id: 'file-test', root, fsync: false, ...options });
    await store.init();
    return {
      store,
      // Partial files of writes in progress are <root>/.partial/<image id>.<nonce>.
      async leftovers(imageId: string) {
        const names = await readdir(join(root, '.partial'));
        return names.filter((name) => name.startsWith(`${imageId}.`));
      },
      async close() {
        await store.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  };
}

describeStoreConformance('FileStore', fileStoreTarget(tmpdir()));
describeStoreConformance('FileStore, page cache', fileStoreTarget(tmpdir(), { directIo: false }));
describeStoreConformance('FileStore on tmpfs', fileStoreTarget(TMPFS), {
  skip: existsSync(TMPFS) ? null : `${TMPFS} is missing`,
});
