/** The Ajv options every validator of the service's own, fixed schemas is built with. */
import type { Options } from 'ajv';

export const SCHEMA_OPTIONS: Options = {
  allErrors: false,
  // The schemas are the service's own and never change at run time; checking them against
  // the JSON Schema meta-schema would compile that meta-schema once per validator, a fifth of
  // the start-up time. Strict mode still refuses an unknown keyword when a schema compiles.
  validateSchema: false,
};
