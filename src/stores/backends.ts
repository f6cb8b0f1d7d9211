/**
 * The store layout a configuration describes: which named stores exist, of which type, with
 * which settings, and which one is the default. Parsing is separate from building the drivers
 * so that a bad layout is refused at start with a message naming the option, before any
 * store is contacted.
 */
import type { StoreType } from './store.js';

/** The reserved id of the store that holds staged data (glance-direct, imports). */
export const STAGING_STORE_ID = 'os_glance_staging_store';

const STORE_TYPES: readonly StoreType[] = ['file', 'swift', 's3', 'http'];
const STORE_ID = /^[A-Za-z0-9_-]{1,255}$/;

export interface BackendSpec {
  readonly id: string;
  readonly type: StoreType;
  readonly description: string | null;
  /** Higher weights are read first when an image has several copies. */
  readonly weight: number;
  /** Driver settings (everything in store_options[id] but description and weight). */
  readonly options: Readonly<Record<string, unknown>>;
}

export interface StoreLayout {
  /** Several named stores, with the multi-store API; false: one file store. */
  readonly multiStore: boolean;
  readonly backends: readonly BackendSpec[];
  readonly defaultId: string;
}

/** The settings a layout is read from (a subset of the configuration). */
export interface LayoutSettings {
  readonly enabled_backends: readonly string[];
  readonly default_backend: string;
  readonly store_options: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

/** Thrown for a layout that cannot work; the message names the option at fault. */
export class StoreLayoutError extends Error {}

/** The single file store a configuration without enabled_backends gets. */
const SINGLE_FILE_STORE = 'file';

export function parseStoreLayout(settings: LayoutSettings): StoreLayout {
  if (settings.enabled_backends.length === 0) return singleStoreLayout(settings);

  const backends = settings.enabled_backends.map((entry) => parseBackend(entry, settings));
  checkUnique(backends);
  for (const id of Object.keys(settings.store_options)) {
    if (!backends.some((backend) => backend.id === id)) {
      throw new StoreLayoutError(`option 'store_options' names '${id}', not in enabled_backends`);
    }
  }

  const defaultId = settings.default_backend;
  const chosen = backends.find((backend) => backend.id === defaultId);
  if (!chosen) {
    throw new StoreLayoutError(
      `option 'default_backend' must name one of enabled_backends, got '${defaultId}'`,
    );
  }
  if (chosen.type === 'http') {
    throw new StoreLayoutError("option 'default_backend' can not name a read-only http store");
  }
  return { multiStore: true, backends, defaultId };
}

function singleStoreLayout(settings: LayoutSettings): StoreLayout {
  if (settings.default_backend !== '') {
    throw new StoreLayoutError("option 'default_backend' needs enabled_backends");
  }
  if (Object.keys(settings.store_options).length > 0) {
    throw new StoreLayoutError("option 'store_options' needs enabled_backends");
  }
  const file: BackendSpec = {
    id: SINGLE_FILE_STORE,
    type: 'file',
    description: null,
    weight: 0,
    options: {},
  };
  return { multiStore: false, backends: [file], defaultId: SINGLE_FILE_STORE };
}

function parseBackend(entry: string, settings: LayoutSettings): BackendSpec {
  const [id = '', type = '', ...rest] = entry.split(':').map((part) => part.trim());
  if (rest.length > 0 || !STORE_ID.test(id) || !isStoreType(type)) {
    throw new StoreLayoutError(
      `option 'enabled_backends' wants id:type entries with type one of ` +
        `${STORE_TYPES.join(', ')}, got '${entry}'`,
    );
  }
  if (id.startsWith('os_glance_')) {
    throw new StoreLayoutError(`option 'enabled_backends': store ids os_glance_* are reserved`);
  }

  const { description, weight, ...options } = settings.store_options[id] ?? {};
  if (description !== undefined && typeof description !== 'string') {
    throw new StoreLayoutError(`option 'store_options': ${id}.description must be a string`);
  }
  if (weight !== undefined && !Number.isInteger(weight)) {
    throw new StoreLayoutError(`option 'store_options': ${id}.weight must be an integer`);
  }
  return {
    id,
    type,
    description: description ?? null,
    weight: (weight as number | undefined) ?? 0,
    options,
  };
}

function isStoreType(type: string): type is StoreType {
  return (STORE_TYPES as readonly string[]).includes(type);
}

function checkUnique(backends: readonly BackendSpec[]): void {
  const seen = new Set<string>();
  for (const { id } of backends) {
    if (seen.has(id)) throw new StoreLayoutError(`option 'enabled_backends' repeats '${id}'`);
    seen.add(id);
  }
}
