/**
 * The policy in force: the default rules with any overrides, parsed and compiled once, so
 * that a check on a request is a map lookup and a closure call.
 */
import type { RequestContext } from '../context.js';
import { ForbiddenError } from '../errors.js';
import { DEFAULT_RULES } from './defaults.js';
import type { PolicyAction } from './defaults.js';
import { compileRuleSet, parseRule, PolicyRuleError, RuleSyntaxError } from './rules.js';
import type { CompiledRule, ParsedRule, PolicyTarget, RuleSource } from './rules.js';

function parseNamed(name: string, source: RuleSource): ParsedRule {
  const text = typeof source === 'string' ? source : JSON.stringify(source);
  try {
    return { node: parseRule(source), text };
  } catch (error) {
    if (error instanceof RuleSyntaxError) throw new PolicyRuleError(name, error.message);
    throw error;
  }
}

function parseAll(sources: Iterable<readonly [string, RuleSource]>): Map<string, ParsedRule> {
  const parsed = new Map<string, ParsedRule>();
  for (const [name, source] of sources) parsed.set(name, parseNamed(name, source));
  return parsed;
}

let defaultsParsed: ReadonlyMap<string, ParsedRule> | undefined;
let defaultsCompiled: ReadonlyMap<string, CompiledRule> | undefined;

/** Parsed on first use and shared: most deployments never override anything. */
function parsedDefaults(): ReadonlyMap<string, ParsedRule> {
  defaultsParsed ??= parseAll(Object.entries(DEFAULT_RULES));
  return defaultsParsed;
}

function compiledDefaults(): ReadonlyMap<string, CompiledRule> {
  defaultsCompiled ??= compileRuleSet(parsedDefaults());
  return defaultsCompiled;
}

const DENY: CompiledRule = () => false;
/** For rules checked without an object: any `%(field)s` in them is missing, hence false. */
const NO_TARGET: PolicyTarget = { owner: null };

export class Policy {
  readonly #rules: ReadonlyMap<string, CompiledRule>;

  /**
   * Overrides replace default rules of the same name and may add new ones (for `rule:`
   * references). Throws PolicyRuleError naming the first rule that does not parse, refers to
   * an unknown rule, or is part of a reference cycle.
   */
  constructor(overrides: ReadonlyMap<string, RuleSource> = new Map()) {
    if (overrides.size === 0) {
      this.#rules = compiledDefaults();
    } else {
      this.#rules = compileRuleSet(new Map([...parsedDefaults(), ...parseAll(overrides)]));
    }
  }

  allows(action: PolicyAction, context: RequestContext, target: PolicyTarget): boolean {
    // Every action has a default rule, so the fallback is unreachable; it fails closed.
    return (this.#rules.get(action) ?? DENY)(context, target);
  }

  /**
   * Checks any rule in force by name, including rules only a policy file defines. An unknown
   * name is refused; upstream would fall back to the `default` rule, which allows everyone.
   */
  allowsRule(name: string, context: RequestContext, target: PolicyTarget = NO_TARGET): boolean {
    return (this.#rules.get(name) ?? DENY)(context, target);
  }

  enforce(action: PolicyAction, context: RequestContext, target: PolicyTarget): void {
    if (!this.allows(action, context, target)) {
      throw new ForbiddenError(`You are not authorized to complete ${action} action.`);
    }
  }
}
