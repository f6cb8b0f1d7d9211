/**
 * The contract between the import flow and its plugins (`[image_import_opts]
 * image_import_plugins`). A plugin works on the staged copy of the image on local disk and
 * reports what the image record should become; the flow owns the record and applies it.
 */

export interface StagedData {
  /** The staged file on local disk; a plugin may replace it in place (same path). */
  readonly path: string;
  readonly diskFormat: string | null;
  readonly containerFormat: string | null;
}

/** Fields to set on the image; an absent field stays as it is. */
export interface PluginOutcome {
  diskFormat?: string;
  containerFormat?: string;
  size?: number;
  virtualSize?: number | null;
  /** Merged into the image's additional properties. */
  properties?: Record<string, string>;
}

export interface PluginContext {
  /** Roles of the user who asked for the import. */
  readonly roles: readonly string[];
  /** The most bytes the staged data may grow to (image_size_cap or what the quota leaves). */
  readonly sizeCap: number;
}

export type PluginName = 'image_conversion' | 'image_decompression' | 'inject_image_metadata';

export interface ImportPlugin {
  readonly name: PluginName;
  /** Throws an Error whose message is the reason the user reads in the task. */
  run(staged: StagedData, context: PluginContext): Promise<PluginOutcome>;
}

export interface PluginSettings {
  /** `[image_conversion] output_format`. */
  conversionOutputFormat: 'raw' | 'qcow2' | 'vmdk';
  /** `[image_format] vmdk_allowed_types`, default ['streamOptimized', 'monolithicSparse']. */
  vmdkAllowedTypes: string[];
  /** `[inject_metadata_properties] inject`. */
  injectProperties: Record<string, string>;
  /** `[inject_metadata_properties] ignore_user_roles`, default ['admin']. */
  injectIgnoreUserRoles: string[];
  /** The qemu-img executable, default 'qemu-img'. */
  qemuImgPath: string;
  /** `[image_format] gpt_safety_checks_nonfatal`, default none (every GPT check is fatal). */
  gptSafetyChecksNonfatal?: string[];
}
