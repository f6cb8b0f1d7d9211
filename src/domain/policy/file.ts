/**
 * Policy override files in upstream's format: a YAML (or JSON) mapping of rule names to rule
 * strings, or to rules in the legacy list-of-lists form. Problems are reported at load, never
 * on a request: a policy that cannot be read as written must stop the service from starting.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { Policy } from './enforcer.js';
import { PolicyRuleError } from './rules.js';
import type { RuleSource } from './rules.js';

export class PolicyFileError extends Error {
  constructor(
    readonly path: string,
    detail: string,
  ) {
    super(`Invalid policy file ${path}: ${detail}`);
    this.name = 'PolicyFileError';
  }
}

/**
 * The default policy when `path` is null; else the defaults with the file's overrides.
 * `extraRules` (such as those property protections define) are added last, replacing any of
 * the same name, as upstream adds them to the enforcer after reading the file. A problem in
 * them is reported against the file when there is one, else as a PolicyRuleError.
 */
export function loadPolicy(
  path: string | null,
  extraRules: Readonly<Record<string, RuleSource>> = {},
): Policy {
  const rules = path === null ? new Map<string, RuleSource>() : readPolicyFile(path);
  for (const [name, rule] of Object.entries(extraRules)) rules.set(name, rule);
  try {
    return new Policy(rules);
  } catch (error) {
    if (path !== null && error instanceof PolicyRuleError) {
      throw new PolicyFileError(path, error.message);
    }
    throw error;
  }
}

/** The file's rules by name, checked for shape but not yet parsed. */
export function readPolicyFile(path: string): Map<string, RuleSource> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new PolicyFileError(path, `cannot be read: ${messageOf(error)}`);
  }
  return toRules(path, decode(path, text));
}

/**
 * JSON is a subset of YAML, so upstream reads every file as YAML; a `.json` file is read as
 * JSON here only because JSON's own errors point more precisely at the mistake.
 */
function decode(path: string, text: string): unknown {
  const json = extname(path).toLowerCase() === '.json';
  try {
    return json ? JSON.parse(text) : yaml().parse(text);
  } catch (error) {
    throw new PolicyFileError(path, `not valid ${json ? 'JSON' : 'YAML'}: ${messageOf(error)}`);
  }
}

function toRules(path: string, data: unknown): Map<string, RuleSource> {
  // An empty file overrides nothing, as upstream.
  if (data === null || data === undefined) return new Map();
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new PolicyFileError(path, 'the top level must be a mapping of rule names to rules');
  }
  const rules = new Map<string, RuleSource>();
  for (const [name, value] of Object.entries(data)) {
    if (!isRuleSource(value)) {
      const problem = 'must be a rule string (or a list of lists of checks)';
      throw new PolicyFileError(path, `rule ${JSON.stringify(name)}: ${problem}`);
    }
    rules.set(name, value);
  }
  return rules;
}

/**
 * Upstream also accepts null (as "allow everyone") and other scalars; here they are refused,
 * since they are more likely a slip than a wish to open a rule to all callers.
 */
function isRuleSource(value: unknown): value is RuleSource {
  if (typeof value === 'string') return true;
  if (!Array.isArray(value)) return false;
  return value.every(
    (item: unknown) =>
      typeof item === 'string' ||
      (Array.isArray(item) && item.every((check: unknown) => typeof check === 'string')),
  );
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// The YAML parser takes a tenth of a second to load; only a YAML policy file needs it.
const load = createRequire(import.meta.url);
function yaml(): typeof Yaml {
  return load('yaml') as typeof Yaml;
}
