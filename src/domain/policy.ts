/**
 * Access rules for image operations: upstream Glance's default policy, overridable by a
 * policy file. The engine lives in ./policy/; this module is the entry point callers import.
 */
export { Policy } from './policy/enforcer.js';
export { DEFAULT_RULES } from './policy/defaults.js';
export type { PolicyAction } from './policy/defaults.js';
export { loadPolicy, PolicyFileError } from './policy/file.js';
export type { PolicyCredentials, PolicyTarget, RuleSource } from './policy/rules.js';
