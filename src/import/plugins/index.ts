/**
 * Import plugins (`[image_import_opts] image_import_plugins`): each runs, in configured order,
 * on the staged copy of an image before it is written to the stores.
 */
import { ConversionPlugin } from './conversion.js';
import { DecompressionPlugin } from './decompression.js';
import { InjectMetadataPlugin } from './inject.js';
import type { ImportPlugin, PluginName, PluginSettings } from './types.js';

export type {
  ImportPlugin,
  PluginContext,
  PluginName,
  PluginOutcome,
  PluginSettings,
  StagedData,
} from './types.js';
export { removePluginLeftovers } from './files.js';

const FACTORIES: Readonly<Record<PluginName, (settings: PluginSettings) => ImportPlugin>> = {
  image_conversion: (settings) => new ConversionPlugin(settings),
  image_decompression: () => new DecompressionPlugin(),
  inject_image_metadata: (settings) => new InjectMetadataPlugin(settings),
};

export const PLUGIN_NAMES: readonly PluginName[] = Object.keys(FACTORIES) as PluginName[];

export function defaultPluginSettings(): PluginSettings {
  return {
    conversionOutputFormat: 'raw',
    vmdkAllowedTypes: ['streamOptimized', 'monolithicSparse'],
    injectProperties: {},
    injectIgnoreUserRoles: ['admin'],
    qemuImgPath: 'qemu-img',
  };
}

/** The plugins named, in that order; throws for a name that is not a known plugin. */
export function createPlugins(names: readonly string[], settings: PluginSettings): ImportPlugin[] {
  return names.map((name) => {
    if (!Object.hasOwn(FACTORIES, name)) {
      const known = PLUGIN_NAMES.join(', ');
      throw new Error(`Unknown image import plugin "${name}" (known plugins: ${known})`);
    }
    return FACTORIES[name as PluginName](settings);
  });
}
