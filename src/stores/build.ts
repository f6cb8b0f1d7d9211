/**
 * Builds the store drivers a configuration names. Drivers other than file are loaded only when
 * configured, so a deployment pays the start-up cost of the SDKs it actually uses.
 */
import { join } from 'node:path';

import { STAGING_STORE_ID } from './backends.js';
import { planStores, type DriverOptions, type StoreSettings } from './driver-options.js';
import { FileStore } from './file/file-store.js';
import { StoreRegistry, type RegisteredStore } from './registry.js';
import type { ImageStore } from './store.js';

/** The registry, and the staging store as a file store (import plugins need its paths). */
export interface BuiltStores {
  readonly stores: StoreRegistry;
  readonly staging: FileStore;
}

/**
 * Builds and initialises every configured store and the staging store. A store that cannot
 * be initialised fails the start, and those built before it are closed.
 */
export async function buildStores(settings: StoreSettings): Promise<BuiltStores> {
  const { layout, drivers } = planStores(settings);
  const staging = new FileStore({
    id: STAGING_STORE_ID,
    root: join(settings.data_dir, 'staging'),
    fsync: settings.filesystem_store_fsync,
  });

  const entries: RegisteredStore[] = [];
  try {
    for (const { spec, driver } of drivers) {
      entries.push({ spec, store: await buildDriver(driver) });
    }
    await Promise.all([staging.init(), ...entries.map((entry) => entry.store.init())]);
  } catch (error) {
    await Promise.allSettled(entries.map((entry) => entry.store.close()));
    throw error;
  }
  return { stores: new StoreRegistry(layout, entries, staging), staging };
}

async function buildDriver(driver: DriverOptions): Promise<ImageStore> {
  switch (driver.type) {
    case 'file':
      return new FileStore(driver.options);
    case 'swift': {
      const { SwiftStore } = await import('./swift/swift-store.js');
      return new SwiftStore(driver.options);
    }
    case 's3': {
      const { S3Store } = await import('./s3/s3-store.js');
      return new S3Store(driver.options);
    }
    case 'http': {
      const { HttpStore } = await import('./http/http-store.js');
      return new HttpStore(driver.options);
    }
  }
}
