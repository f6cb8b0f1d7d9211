import { getHashes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { SCHEMA_OPTIONS } from '../domain/schema-options.js';

import { parseStorageQuota } from '../quota/storage.js';
import { planStores } from '../stores/driver-options.js';
import { OPTIONS, type Config, type OptionName, type OptionSpec } from './schema.js';

/** Raised when the configuration cannot be used; the message names the offending option. */
export class ConfigError extends Error {}

type RawConfig = Record<string, unknown>;

const ENV_PREFIX = 'GLIMPSE_';
const TEST_PREFIX = 'GLIMPSE_TEST_';

/**
 * Builds the configuration from defaults, the optional JSON file and GLIMPSE_* variables,
 * validates it once against the option table, and freezes it.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<Record<OptionName, unknown>> = {},
): Config {
  const fromFile = readConfigFile(env);
  const fromEnv = readEnvironment(env);
  const merged: RawConfig = { ...defaults(), ...fromFile, ...fromEnv, ...overrides };

  validate(merged);
  const config = Object.freeze(merged) as Config;
  checkMeaning(config);
  return config;
}

function defaults(): RawConfig {
  const values: RawConfig = {};
  for (const [name, spec] of Object.entries(OPTIONS)) values[name] = spec.default;
  return values;
}

function readConfigFile(env: NodeJS.ProcessEnv): RawConfig {
  const explicit = env.GLIMPSE_CONFIG;
  const path = explicit ?? 'glimpse.json';
  if (!explicit && !existsSync(path)) return {};

  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return parsed as RawConfig;
}

/** Environment values are strings; convert them by the option's type before validation. */
function readEnvironment(env: NodeJS.ProcessEnv): RawConfig {
  const values: RawConfig = {};
  for (const [key, text] of Object.entries(env)) {
    if (!key.startsWith(ENV_PREFIX) || key === 'GLIMPSE_CONFIG' || text === undefined) continue;
    // GLIMPSE_TEST_* belong to the test suites and their scripts, not to the server.
    if (key.startsWith(TEST_PREFIX)) continue;

    const name = key.slice(ENV_PREFIX.length).toLowerCase();
    const spec: OptionSpec | undefined = (OPTIONS as Record<string, OptionSpec>)[name];
    if (!spec) throw new ConfigError(`unknown option ${key} in the environment`);
    values[name] = fromEnvText(key, spec, text);
  }
  return values;
}

function fromEnvText(key: string, spec: OptionSpec, text: string): unknown {
  switch (spec.type) {
    case 'integer': {
      const value = Number(text.trim());
      if (text.trim() === '' || !Number.isInteger(value)) {
        throw new ConfigError(`option ${key} must be an integer, got '${text}'`);
      }
      return value;
    }
    case 'boolean':
      if (!/^(true|false)$/i.test(text.trim())) {
        throw new ConfigError(`option ${key} must be true or false, got '${text}'`);
      }
      return text.trim().toLowerCase() === 'true';
    case 'list':
      return text
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    case 'string':
      return text;
    case 'object':
      return parseJsonObject(key, text);
  }
}

function parseJsonObject(key: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ConfigError(`option ${key} must be a JSON object, got '${text}'`);
  }
}

const JSON_TYPES = {
  string: 'string',
  integer: 'integer',
  boolean: 'boolean',
  list: 'array',
  object: 'object',
};

function jsonSchemaOf(spec: OptionSpec): Record<string, unknown> {
  const schema: Record<string, unknown> = { type: JSON_TYPES[spec.type] };
  if (spec.type === 'object') schema.additionalProperties = { type: 'object' };
  if (spec.type === 'list') schema.items = spec.enum ? { enum: spec.enum } : { type: 'string' };
  if (spec.enum && spec.type !== 'list') schema.enum = spec.enum;
  if (spec.minimum !== undefined) schema.minimum = spec.minimum;
  if (spec.maximum !== undefined) schema.maximum = spec.maximum;
  return schema;
}

const validator = new Ajv(SCHEMA_OPTIONS).compile({
  type: 'object',
  additionalProperties: false,
  properties: Object.fromEntries(
    Object.entries(OPTIONS).map(([name, spec]) => [name, jsonSchemaOf(spec)]),
  ),
});

function validate(config: RawConfig): void {
  if (validator(config)) return;

  const error = validator.errors?.[0];
  if (!error) throw new ConfigError('invalid configuration');
  if (error.keyword === 'additionalProperties') {
    const name = String(error.params.additionalProperty);
    throw new ConfigError(`unknown option '${name}'`);
  }
  const name = error.instancePath.split('/')[1] ?? '?';
  throw new ConfigError(`option '${name}' ${error.message ?? 'is invalid'}`);
}

/** Rules a JSON schema cannot express. */
function checkMeaning(config: Config): void {
  if (config.database_url && !/^(postgres(ql)?:\/\/|sqlite:)/.test(config.database_url)) {
    throw new ConfigError(
      "option 'database_url' must be empty, sqlite:<path> or a postgres:// URL",
    );
  }
  if (config.auth_strategy === 'keystone') requireKeystone(config, 'auth_strategy is keystone');
  if (config.use_keystone_limits) requireKeystone(config, 'use_keystone_limits is true');
  if (
    config.enabled_import_methods.includes('glance-download') &&
    config.auth_strategy !== 'keystone'
  ) {
    throw new ConfigError(
      "option 'enabled_import_methods': glance-download needs auth_strategy keystone (the " +
        'other region is found in the Keystone catalog)',
    );
  }
  if (parseStorageQuota(config.user_storage_quota) === null) {
    throw new ConfigError(
      "option 'user_storage_quota' must be a whole number of bytes, optionally followed by " +
        `B, KB, MB, GB or TB without a space (e.g. 10GB), got '${config.user_storage_quota}'`,
    );
  }
  for (const name of ['allowed_ports', 'disallowed_ports'] as const) {
    if (config[name].some((port) => !/^\d{1,5}$/.test(port) || Number(port) > 65535)) {
      throw new ConfigError(`option '${name}' must list port numbers`);
    }
  }
  if (config.inject_metadata_properties.some((entry) => !/^[^:]+:/.test(entry))) {
    throw new ConfigError("option 'inject_metadata_properties' must list key:value pairs");
  }
  try {
    planStores(config);
  } catch (error) {
    // Layout and driver setting errors name the option, the store and the setting.
    throw new ConfigError(error instanceof Error ? error.message : String(error));
  }
  if (!getHashes().includes(config.hashing_algorithm)) {
    throw new ConfigError(
      `option 'hashing_algorithm' names an unknown digest '${config.hashing_algorithm}'`,
    );
  }
}

function requireKeystone(config: Config, reason: string): void {
  for (const name of ['keystone_auth_url', 'keystone_password'] as const) {
    if (!config[name]) throw new ConfigError(`option '${name}' must be set when ${reason}`);
  }
}
