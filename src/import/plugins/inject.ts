/**
 * inject_image_metadata: operator-chosen properties are added to every imported image, except
 * when the importing user holds one of the exempt roles. Keys in the reserved `os_glance`
 * namespace are dropped, since they drive the service's own bookkeeping (import locks, store
 * lists) and no configuration may forge them.
 */
import type {
  ImportPlugin,
  PluginContext,
  PluginOutcome,
  PluginSettings,
  StagedData,
} from './types.js';

const RESERVED_PREFIX = 'os_glance';

export class InjectMetadataPlugin implements ImportPlugin {
  readonly name = 'inject_image_metadata';
  readonly #properties: Readonly<Record<string, string>>;
  readonly #ignoredRoles: ReadonlySet<string>;

  constructor(settings: PluginSettings) {
    const entries = Object.entries(settings.injectProperties);
    this.#properties = Object.fromEntries(
      entries.filter(([key]) => !key.startsWith(RESERVED_PREFIX)),
    );
    this.#ignoredRoles = new Set(settings.injectIgnoreUserRoles);
  }

  async run(_staged: StagedData, context: PluginContext): Promise<PluginOutcome> {
    if (context.roles.some((role) => this.#ignoredRoles.has(role))) return {};
    if (Object.keys(this.#properties).length === 0) return {};
    return { properties: { ...this.#properties } };
  }
}
