/**
 * From a configured store (its type and store_options) to the options its driver is built
 * with, checked. Only setting tables are loaded here, no driver and no SDK, so the
 * configuration check at start refuses a bad store setting before anything is contacted.
 */
import { join } from 'node:path';

import {
  parseStoreLayout,
  type BackendSpec,
  type LayoutSettings,
  type StoreLayout,
} from './backends.js';
import type { FileStoreOptions } from './file/file-store.js';
import type { HttpStoreOptions } from './http/http-store.js';
import { parseS3Settings, S3_STORE_SETTINGS, type S3StoreOptions } from './s3/s3-config.js';
import { settingsChecker, type StoreSettingSpecs } from './settings.js';
import type { StoreType } from './store.js';
import {
  parseSwiftSettings,
  SWIFT_STORE_SETTINGS,
  type SwiftStoreOptions,
} from './swift/swift-config.js';

export type DriverOptions =
  | { readonly type: 'file'; readonly options: FileStoreOptions }
  | { readonly type: 'swift'; readonly options: SwiftStoreOptions }
  | { readonly type: 's3'; readonly options: S3StoreOptions }
  | { readonly type: 'http'; readonly options: HttpStoreOptions };

/** The configuration options stores are planned from. */
export interface StoreSettings extends LayoutSettings {
  readonly data_dir: string;
  /** The directory of the one file store outside multi-store. */
  readonly filesystem_store_datadir: string;
  /** What file stores do when their own settings do not say. */
  readonly filesystem_store_fsync: boolean;
}

/** The stores a configuration describes, each with its driver's options. */
export interface StorePlan {
  readonly layout: StoreLayout;
  readonly drivers: ReadonlyArray<{ readonly spec: BackendSpec; readonly driver: DriverOptions }>;
}

export const FILE_STORE_SETTINGS = {
  filesystem_store_datadir: {
    type: 'string',
    default: '',
    description: 'Directory of the store. Empty: data_dir/stores/<store id>.',
  },
  filesystem_store_fsync: {
    type: 'boolean',
    default: null,
    description:
      'Flush data to disk before an image turns active. Not set: the top-level ' +
      'filesystem_store_fsync.',
  },
} as const satisfies StoreSettingSpecs;

/** The settings each type of store takes in store_options, for checks and documentation. */
export const STORE_SETTINGS: Readonly<Record<StoreType, StoreSettingSpecs>> = {
  file: FILE_STORE_SETTINGS,
  swift: SWIFT_STORE_SETTINGS,
  s3: S3_STORE_SETTINGS,
  http: {},
};

const checkFileSettings = settingsChecker(FILE_STORE_SETTINGS);
const checkHttpSettings = settingsChecker({});

/**
 * The layout and every store's driver options. Throws StoreLayoutError for a bad layout and
 * an Error naming the store and the setting for a bad driver setting.
 */
export function planStores(settings: StoreSettings): StorePlan {
  const layout = parseStoreLayout(settings);
  const drivers = layout.backends.map((spec) => ({
    spec,
    driver: driverOptions(spec, layout.multiStore, settings),
  }));
  return { layout, drivers };
}

/**
 * The driver options of a configured store. Outside multi-store, the one file store is
 * configured by the top-level options.
 */
function driverOptions(
  spec: BackendSpec,
  multiStore: boolean,
  settings: StoreSettings,
): DriverOptions {
  switch (spec.type) {
    case 'file':
      return { type: 'file', options: fileOptions(spec, multiStore, settings) };
    case 'swift':
      return { type: 'swift', options: parseSwiftSettings(spec.id, spec.options) };
    case 's3':
      return { type: 's3', options: parseS3Settings(spec.id, spec.options) };
    case 'http':
      checkHttpSettings(spec.id, spec.options);
      return { type: 'http', options: { id: spec.id } };
  }
}

function fileOptions(
  spec: BackendSpec,
  multiStore: boolean,
  settings: StoreSettings,
): FileStoreOptions {
  const value = checkFileSettings(spec.id, spec.options);
  const dir = value('filesystem_store_datadir') as string;
  const fsync = value('filesystem_store_fsync') as boolean | null;
  const fallback = multiStore
    ? join(settings.data_dir, 'stores', spec.id)
    : settings.filesystem_store_datadir || join(settings.data_dir, 'images');
  return { id: spec.id, root: dir || fallback, fsync: fsync ?? settings.filesystem_store_fsync };
}
