/**
 * Driver settings of named stores (store_options.<id>): each driver declares its settings in
 * one table, from which both the check at start and the configuration reference come. A bad
 * setting stops the start with a message naming the store and the setting.
 *
 * This module loads no driver and no SDK, so a configuration can be checked without them.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { SCHEMA_OPTIONS } from '../domain/schema-options.js';

/** One driver setting. */
export interface StoreSettingSpec {
  readonly type: 'string' | 'integer' | 'boolean';
  /** The value when the setting is not given; null: none (see `required`, `description`). */
  readonly default: string | number | boolean | null;
  readonly description: string;
  /** The setting must be given (and a string setting must not be empty). */
  readonly required?: boolean;
  readonly enum?: readonly string[];
  readonly minimum?: number;
  readonly maximum?: number;
  /** A regular expression a string setting must match. */
  readonly pattern?: string;
}

export type StoreSettingSpecs = Readonly<Record<string, StoreSettingSpec>>;

/** Reads one setting, falling back to its default. */
export type SettingValue<S extends StoreSettingSpecs> = (name: keyof S & string) => unknown;

/**
 * A checker for a driver's settings: it refuses unknown settings, missing required ones and
 * values of the wrong type or range, and hands back a reader of the values with defaults.
 */
export function settingsChecker<S extends StoreSettingSpecs>(
  specs: S,
): (storeId: string, given: Readonly<Record<string, unknown>>) => SettingValue<S> {
  // Compiled on first use: most deployments configure one kind of store, or none.
  let validate: ValidateFunction | null = null;
  return (storeId, given) => {
    validate ??= compile(specs);
    if (!validate(given)) throw new Error(describeFailure(storeId, validate.errors?.[0]));
    return (name) => given[name] ?? specs[name]?.default ?? null;
  };
}

function compile(specs: StoreSettingSpecs): ValidateFunction {
  const properties = Object.fromEntries(
    Object.entries(specs).map(([name, spec]) => [name, jsonSchemaOf(spec)]),
  );
  const required = Object.entries(specs)
    .filter(([, spec]) => spec.required === true)
    .map(([name]) => name);
  return new Ajv(SCHEMA_OPTIONS).compile({
    type: 'object',
    additionalProperties: false,
    required,
    properties,
  });
}

function jsonSchemaOf(spec: StoreSettingSpec): Record<string, unknown> {
  const schema: Record<string, unknown> = { type: spec.type };
  if (spec.enum) schema.enum = spec.enum;
  if (spec.minimum !== undefined) schema.minimum = spec.minimum;
  if (spec.maximum !== undefined) schema.maximum = spec.maximum;
  if (spec.pattern !== undefined) schema.pattern = spec.pattern;
  if (spec.type === 'string' && spec.required === true) schema.minLength = 1;
  return schema;
}

function describeFailure(storeId: string, error: ErrorObject | undefined): string {
  if (!error) return `store ${storeId}: invalid settings`;
  if (error.keyword === 'additionalProperties') {
    return `store ${storeId}: unknown setting '${String(error.params.additionalProperty)}'`;
  }
  if (error.keyword === 'required') {
    return `store ${storeId}: setting '${String(error.params.missingProperty)}' is required`;
  }
  const name = error.instancePath.split('/')[1] ?? '?';
  if (error.keyword === 'enum') {
    const allowed = (error.params.allowedValues as unknown[]).join(', ');
    return `store ${storeId}: setting '${name}' must be one of ${allowed}`;
  }
  return `store ${storeId}: setting '${name}' ${error.message ?? 'is invalid'}`;
}
