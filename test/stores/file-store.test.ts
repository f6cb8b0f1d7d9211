/** The file store against the store conformance suite, in a temporary directory. */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { FileStore } from '../../src/stores/file/file-store.js';
import { describeStoreConformance } from './conformance.js';

describeStoreConformance('FileStore', async () => {
  const root = await mkdtemp(join(tmpdir(), 'glimpse-file-store-'));
  const store = new FileStore({ id: 'file-test', root, fsync: false });
  await store.init();
  return {
    store,
    // Partial files of writes in progress are <root>/.partial/<image id>.<nonce>.
    async leftovers(imageId) {
      const names = await readdir(join(root, '.partial'));
      return names.filter((name) => name.startsWith(`${imageId}.`));
    },
    async close() {
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
});
