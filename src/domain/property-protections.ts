/**
 * Property protections in upstream's file format: each INI section is a regular expression
 * over property names, with `create`, `read`, `update` and `delete` entries naming who may do
 * that: comma-separated roles (`roles` format, `@` everyone, `!` no one) or one policy rule
 * (`policies` format). The first section whose expression matches a property decides; a
 * property no section matches is not accessible at all.
 */
import type { RequestContext } from './context.js';

export const PROPERTY_OPERATIONS = ['create', 'read', 'update', 'delete'] as const;
export type PropertyOperation = (typeof PROPERTY_OPERATIONS)[number];

export type RuleFormat = 'roles' | 'policies';

/** Evaluates a named policy rule for the caller (the `policies` format). */
export type PolicyRuleCheck = (rule: string, context: RequestContext) => boolean;

interface Section {
  readonly expression: RegExp;
  readonly source: string;
  readonly permissions: Readonly<Record<PropertyOperation, readonly string[]>>;
}

export class PropertyProtectionError extends Error {}

export class PropertyProtections {
  readonly #sections: readonly Section[];
  readonly #format: RuleFormat;
  readonly #checkPolicy: PolicyRuleCheck;

  private constructor(sections: Section[], format: RuleFormat, checkPolicy: PolicyRuleCheck) {
    this.#sections = sections;
    this.#format = format;
    this.#checkPolicy = checkPolicy;
  }

  /** Parses the file's text; `origin` names it in error messages. */
  static parse(
    text: string,
    origin: string,
    format: RuleFormat,
    checkPolicy: PolicyRuleCheck,
  ): PropertyProtections {
    // Internal bookkeeping properties are always accessible; a user section cannot shadow it.
    const internal = section('os_glance.*', { create: '@', read: '@', update: '@', delete: '@' });
    const sections = parseIni(text, origin)
      .filter(([name]) => !name.startsWith('os_glance'))
      .map(([name, entries]) => sectionOf(name, entries, origin, format));
    return new PropertyProtections([internal, ...sections], format, checkPolicy);
  }

  allows(property: string, operation: PropertyOperation, context: RequestContext): boolean {
    const match = this.#sections.find((candidate) => candidate.expression.test(property));
    if (!match) return false;

    const permissions = match.permissions[operation];
    if (permissions.includes('!')) return false;
    if (permissions.includes('@')) return true;
    if (this.#format === 'policies') {
      return permissions.length > 0 && this.#checkPolicy(`${match.source}:${operation}`, context);
    }
    const roles = new Set([...context.roles, ...(context.serviceRoles ?? [])]);
    return permissions.some((role) => roles.has(role.toLowerCase()));
  }

  /** The rules the `policies` format adds to the policy engine: "<section>:<op>" → rule. */
  policyRules(): Record<string, string> {
    if (this.#format !== 'policies') return {};
    const rules: Record<string, string> = {};
    for (const { source, permissions } of this.#sections.slice(1)) {
      for (const operation of PROPERTY_OPERATIONS) {
        const [rule] = permissions[operation];
        if (rule && rule !== '@' && rule !== '!') rules[`${source}:${operation}`] = `rule:${rule}`;
      }
    }
    return rules;
  }
}

function section(source: string, entries: Record<string, string>): Section {
  const permissions = Object.fromEntries(
    PROPERTY_OPERATIONS.map((op) => [op, splitList(entries[op] ?? '')]),
  ) as Record<PropertyOperation, string[]>;
  return { expression: new RegExp(source), source, permissions };
}

function sectionOf(
  name: string,
  entries: Record<string, string>,
  origin: string,
  format: RuleFormat,
): Section {
  try {
    new RegExp(name);
  } catch (error) {
    throw new PropertyProtectionError(
      `${origin}: section [${name}] is not a valid regular expression: ${(error as Error).message}`,
    );
  }
  for (const operation of PROPERTY_OPERATIONS) {
    const value = entries[operation];
    if (value === undefined) {
      throw new PropertyProtectionError(
        `${origin}: section [${name}] has no '${operation}' entry`,
      );
    }
    const list = splitList(value);
    if (list.includes('@') && list.includes('!')) {
      throw new PropertyProtectionError(
        `${origin}: [${name}] ${operation}: '@' and '!' are mutually exclusive`,
      );
    }
    if (format === 'policies' && list.length > 1) {
      throw new PropertyProtectionError(
        `${origin}: [${name}] ${operation}: name one policy rule; combine rules in the policy file`,
      );
    }
  }
  return section(name, entries);
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** A small INI reader: [section] headers, key = value (or key: value), # and ; comments. */
function parseIni(text: string, origin: string): Array<[string, Record<string, string>]> {
  const sections: Array<[string, Record<string, string>]> = [];
  let current: Record<string, string> | null = null;

  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;

    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = {};
      sections.push([header[1] as string, current]);
      return;
    }
    const entry = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(line);
    if (!entry || current === null) {
      throw new PropertyProtectionError(`${origin}:${index + 1}: cannot parse '${line}'`);
    }
    current[(entry[1] as string).toLowerCase()] = entry[2] as string;
  });
  return sections;
}
