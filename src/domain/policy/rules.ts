/**
 * The oslo.policy rule language: parsing rule strings (and the legacy list-of-lists form) into
 * a tree once, then compiling a whole rule set into plain closures so that evaluating a rule on
 * a request costs a few property reads and comparisons, with `rule:` references already bound.
 *
 * Semantics follow oslo.policy, except where it fails open or silently: text it cannot parse,
 * unknown `rule:` references and reference cycles are errors here instead of "deny" (or, for
 * unknown references, "fall back to the default rule").
 */

/** What a rule can learn about the caller (a subset of the request context). */
export interface PolicyCredentials {
  readonly projectId: string | null;
  readonly userId: string | null;
  /** Lower-cased role names. */
  readonly roles: readonly string[];
  readonly isAdmin: boolean;
  /** Roles of an accompanying service token, if one was sent. */
  readonly serviceRoles?: readonly string[];
}

/**
 * What a rule can learn about the object acted on. Rules name fields the way upstream Glance
 * does: `project_id` and `owner` both read `owner` (an image's project is its owner),
 * `member_id` reads `memberId`, `visibility` reads `visibility`, and any other name is looked
 * up in `attributes`. A missing or null field makes the check that uses it false.
 */
export interface PolicyTarget {
  readonly owner: string | null;
  readonly visibility?: string;
  /** The caller's project when it is a member of the (shared) image. */
  readonly memberId?: string | null;
  /** Other attributes by upstream name (e.g. image properties), for site-specific rules. */
  readonly attributes?: Readonly<Record<string, string | number | boolean | null>>;
}

export type CompiledRule = (credentials: PolicyCredentials, target: PolicyTarget) => boolean;

/** A rule as written in a policy file: the rule language, or the legacy list-of-lists form. */
export type RuleSource = string | readonly (string | readonly string[])[];

/** `%(field)s` substitutions and literal text, in order. */
type Template = readonly (string | { readonly field: string })[];

/** The left side of a generic check: a literal, or a path into the credentials. */
type Operand = { readonly literal: string } | { readonly credential: string };

export type RuleNode =
  | { readonly type: 'always' }
  | { readonly type: 'never' }
  | { readonly type: 'not'; readonly operand: RuleNode }
  | { readonly type: 'and' | 'or'; readonly operands: readonly RuleNode[] }
  | { readonly type: 'rule'; readonly name: string; readonly position: number }
  | { readonly type: 'role'; readonly match: Template }
  | { readonly type: 'generic'; readonly left: Operand; readonly match: Template };

/** A rule string that cannot be parsed; `position` is 1-based within `text`. */
export class RuleSyntaxError extends Error {
  constructor(
    readonly reason: string,
    readonly position: number,
    readonly text: string,
  ) {
    super(`${reason} at position ${position} in ${JSON.stringify(text)}`);
    this.name = 'RuleSyntaxError';
  }
}

/** A problem with one named rule of a rule set (syntax, reference or cycle). */
export class PolicyRuleError extends Error {
  constructor(
    readonly ruleName: string,
    readonly detail: string,
  ) {
    super(`rule ${JSON.stringify(ruleName)}: ${detail}`);
    this.name = 'PolicyRuleError';
  }
}

/** Deeper nesting than this is surely a mistake, and would risk the stack. */
const MAX_NESTING = 64;
/** Longest chain of `rule:` references, so compiling cannot recurse without bound. */
export const MAX_REFERENCE_DEPTH = 32;

// ---------------------------------------------------------------------------------------------
// Tokens

type Token =
  | { readonly kind: '(' | ')' | 'and' | 'or' | 'not'; readonly text: string; readonly at: number }
  | { readonly kind: 'check' | 'quoted'; readonly text: string; readonly at: number };

const OPERATORS = new Set(['and', 'or', 'not']);

/**
 * Splits on whitespace, then peels parentheses off the ends of each word: a check's own
 * parentheses (`%(owner)s`) are never at its start or end, so this is unambiguous.
 */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  for (const word of text.matchAll(/\S+/g)) {
    let at = word.index + 1;
    let body = word[0];
    while (body.startsWith('(')) {
      tokens.push({ kind: '(', text: '(', at: at++ });
      body = body.slice(1);
    }
    if (body === '') continue;
    const clean = body.replace(/\)+$/, '');
    if (clean !== '') tokens.push(wordToken(body, clean, at));
    for (let i = clean.length; i < body.length; i++) {
      tokens.push({ kind: ')', text: ')', at: at + i });
    }
  }
  return tokens;
}

function wordToken(body: string, clean: string, at: number): Token {
  const lowered = clean.toLowerCase();
  if (OPERATORS.has(lowered)) {
    return { kind: lowered as 'and' | 'or' | 'not', text: clean, at };
  }
  const quoted =
    body.length >= 2 && (body[0] === '"' || body[0] === "'") && body.at(-1) === body[0];
  return { kind: quoted ? 'quoted' : 'check', text: clean, at };
}

// ---------------------------------------------------------------------------------------------
// Parsing

/** Parses a rule in either form. An empty string (or list) allows everyone, as upstream. */
export function parseRule(source: RuleSource): RuleNode {
  if (typeof source === 'string') return parseText(source);
  return parseList(source);
}

function parseText(text: string): RuleNode {
  if (text === '') return { type: 'always' };
  const parser = new Parser(text, tokenize(text));
  return parser.parseAll();
}

/** Precedence, loosest first: `or`, `and`, `not`; parentheses group. */
class Parser {
  #next = 0;

  constructor(
    readonly text: string,
    readonly tokens: readonly Token[],
  ) {}

  parseAll(): RuleNode {
    if (this.tokens.length === 0) this.fail('blank rule (use "" or "@" to allow all)', 1);
    const node = this.parseOr(0);
    const extra = this.tokens[this.#next];
    if (extra) this.fail(`unexpected ${JSON.stringify(extra.text)}`, extra.at);
    return node;
  }

  private parseOr(depth: number): RuleNode {
    const operands = [this.parseAnd(depth)];
    while (this.accept('or')) operands.push(this.parseAnd(depth));
    return operands.length === 1 ? operands[0]! : { type: 'or', operands };
  }

  private parseAnd(depth: number): RuleNode {
    const operands = [this.parseNot(depth)];
    while (this.accept('and')) operands.push(this.parseNot(depth));
    return operands.length === 1 ? operands[0]! : { type: 'and', operands };
  }

  private parseNot(depth: number): RuleNode {
    const token = this.tokens[this.#next];
    if (token?.kind !== 'not') return this.parseAtom(depth);
    this.#next++;
    this.checkDepth(depth, token);
    return { type: 'not', operand: this.parseNot(depth + 1) };
  }

  private parseAtom(depth: number): RuleNode {
    const token = this.tokens[this.#next++];
    if (!token) return this.fail('rule ends where a check was expected', this.text.length + 1);
    if (token.kind === 'check') return parseCheck(token.text, token.at, this.text);
    if (token.kind === 'quoted') return this.fail('a quoted string is not a check', token.at);
    if (token.kind !== '(') return this.fail(`unexpected ${JSON.stringify(token.text)}`, token.at);
    this.checkDepth(depth, token);
    const inner = this.parseOr(depth + 1);
    if (!this.accept(')')) this.fail(`no ")" closes the "(" at position ${token.at}`, this.here());
    return inner;
  }

  private accept(kind: Token['kind']): boolean {
    if (this.tokens[this.#next]?.kind !== kind) return false;
    this.#next++;
    return true;
  }

  private here(): number {
    return this.tokens[this.#next]?.at ?? this.text.length + 1;
  }

  private checkDepth(depth: number, token: Token): void {
    if (depth >= MAX_NESTING) this.fail(`nested deeper than ${MAX_NESTING} levels`, token.at);
  }

  private fail(reason: string, position: number): never {
    throw new RuleSyntaxError(reason, position, this.text);
  }
}

/** Outer list: alternatives ("or"); inner list: checks that must all pass ("and"). */
function parseList(source: readonly (string | readonly string[])[]): RuleNode {
  if (source.length === 0) return { type: 'always' };
  const alternatives: RuleNode[] = [];
  for (const item of source) {
    const checks = typeof item === 'string' ? [item] : item;
    if (checks.length === 0) continue;
    const nodes = checks.map((check) => parseCheck(check, 1, check));
    alternatives.push(nodes.length === 1 ? nodes[0]! : { type: 'and', operands: nodes });
  }
  if (alternatives.length === 0) return { type: 'never' };
  return alternatives.length === 1 ? alternatives[0]! : { type: 'or', operands: alternatives };
}

/** One `kind:match` check (or `@` / `!`) starting at `at` within `text`. */
function parseCheck(check: string, at: number, text: string): RuleNode {
  if (check === '@') return { type: 'always' };
  if (check === '!') return { type: 'never' };
  const colon = check.indexOf(':');
  const fail = (reason: string): never => {
    throw new RuleSyntaxError(reason, at, text);
  };
  if (colon < 0) return fail(`${JSON.stringify(check)} is not a check (kind:match, @ or !)`);
  const kind = check.slice(0, colon);
  const match = check.slice(colon + 1);
  const matchAt = at + colon + 1;
  switch (kind) {
    case '':
      return fail('a check needs something before ":"');
    case 'rule':
      if (match === '') return fail('"rule:" needs a rule name');
      return { type: 'rule', name: match, position: at };
    case 'role':
      return { type: 'role', match: parseTemplate(match, matchAt, text) };
    case 'http':
    case 'https':
      return fail(`${kind} checks (remote policy servers) are not supported`);
    default:
      return {
        type: 'generic',
        left: parseOperand(kind, at, text),
        match: parseTemplate(match, matchAt, text),
      };
  }
}

/**
 * The left side of a generic check is a Python literal (a quoted string, True, False, None
 * or an integer) compared as its string form, or else a dotted path into the credentials.
 */
function parseOperand(kind: string, at: number, text: string): Operand {
  const quote = kind[0];
  if (quote === '"' || quote === "'") {
    if (kind.length < 2 || kind.at(-1) !== quote || kind.slice(1, -1).includes(quote)) {
      throw new RuleSyntaxError(`unterminated quoted string ${kind}`, at, text);
    }
    if (kind.includes('\\')) {
      throw new RuleSyntaxError('escape sequences in quoted strings are not supported', at, text);
    }
    return { literal: kind.slice(1, -1) };
  }
  if (/^(True|False|None|-?(0|[1-9][0-9]*))$/.test(kind)) return { literal: kind };
  return { credential: kind };
}

/** Python %-formatting against the target, limited to the forms rules use: `%(name)s`, `%%`. */
function parseTemplate(match: string, at: number, text: string): Template {
  const parts: (string | { field: string })[] = [];
  let literal = '';
  for (let i = 0; i < match.length; i++) {
    if (match[i] !== '%') {
      literal += match[i];
    } else if (match[i + 1] === '%') {
      literal += '%';
      i++;
    } else {
      const field = /^%\(([^()]*)\)s/.exec(match.slice(i));
      if (!field) throw new RuleSyntaxError('"%" must start "%(field)s" or "%%"', at + i, text);
      if (literal !== '') parts.push(literal);
      parts.push({ field: field[1]! });
      literal = '';
      i += field[0].length - 1;
    }
  }
  if (literal !== '' || parts.length === 0) parts.push(literal);
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Compiling

export interface ParsedRule {
  readonly node: RuleNode;
  /** The rule as written, for error messages. */
  readonly text: string;
}

/**
 * Compiles every rule of a set, binding each `rule:` reference to the referenced rule's
 * closure. Throws PolicyRuleError for an unknown reference, a cycle, or too deep a chain.
 */
export function compileRuleSet(rules: ReadonlyMap<string, ParsedRule>): Map<string, CompiledRule> {
  const compiled = new Map<string, CompiledRule>();
  const path: string[] = [];

  const visit = (name: string): CompiledRule => {
    const done = compiled.get(name);
    if (done) return done;
    const rule = rules.get(name)!;
    path.push(name);
    const resolve = (ref: RuleNode & { type: 'rule' }): CompiledRule => {
      if (!rules.has(ref.name)) throw unknownReference(name, ref, rule.text);
      const known = compiled.get(ref.name);
      if (known) return known;
      if (path.includes(ref.name)) throw referenceCycle(ref.name, path);
      if (path.length >= MAX_REFERENCE_DEPTH) throw tooDeep(path);
      return visit(ref.name);
    };
    const fn = compileNode(rule.node, resolve);
    path.pop();
    compiled.set(name, fn);
    return fn;
  };

  for (const name of rules.keys()) visit(name);
  return compiled;
}

function unknownReference(name: string, ref: { name: string; position: number }, text: string) {
  const where = `at position ${ref.position} in ${JSON.stringify(text)}`;
  return new PolicyRuleError(name, `refers to unknown rule ${JSON.stringify(ref.name)} ${where}`);
}

function referenceCycle(name: string, path: readonly string[]) {
  const cycle = [...path.slice(path.indexOf(name)), name].join(' -> ');
  return new PolicyRuleError(name, `rule references form a cycle: ${cycle}`);
}

function tooDeep(path: readonly string[]) {
  const detail = `rule references nest deeper than ${MAX_REFERENCE_DEPTH}: ${path.join(' -> ')}`;
  return new PolicyRuleError(path[0]!, detail);
}

const ALWAYS: CompiledRule = () => true;
const NEVER: CompiledRule = () => false;

type Resolve = (ref: RuleNode & { type: 'rule' }) => CompiledRule;

function compileNode(node: RuleNode, resolve: Resolve): CompiledRule {
  switch (node.type) {
    case 'always':
      return ALWAYS;
    case 'never':
      return NEVER;
    case 'not': {
      const operand = compileNode(node.operand, resolve);
      return (c, t) => !operand(c, t);
    }
    case 'and':
      return all(node.operands.map((operand) => compileNode(operand, resolve)));
    case 'or':
      return any(node.operands.map((operand) => compileNode(operand, resolve)));
    case 'rule':
      return resolve(node);
    case 'role':
      return compileRole(node.match);
    case 'generic':
      return compileGeneric(node.left, node.match);
  }
}

function all(rules: readonly CompiledRule[]): CompiledRule {
  const [a, b] = rules;
  if (rules.length === 2) return (c, t) => a!(c, t) && b!(c, t);
  return (c, t) => rules.every((rule) => rule(c, t));
}

function any(rules: readonly CompiledRule[]): CompiledRule {
  const [a, b] = rules;
  if (rules.length === 2) return (c, t) => a!(c, t) || b!(c, t);
  return (c, t) => rules.some((rule) => rule(c, t));
}

/** Role names compare case-insensitively; the context's roles are already lower-cased. */
function compileRole(match: Template): CompiledRule {
  const constant = constantOf(match);
  if (constant !== undefined) {
    const role = constant.toLowerCase();
    return (c) => c.roles.includes(role);
  }
  const expand = compileTemplate(match);
  return (c, t) => {
    const role = expand(t);
    return role !== undefined && c.roles.includes(role.toLowerCase());
  };
}

function compileGeneric(left: Operand, match: Template): CompiledRule {
  const expand = compileTemplate(match);
  if ('literal' in left) {
    const literal = left.literal;
    return (_c, t) => expand(t) === literal;
  }
  const read = credentialReader(left.credential);
  return (c, t) => {
    const value = expand(t);
    return value !== undefined && read(c, value);
  };
}

type CredentialTest = (credentials: PolicyCredentials, value: string) => boolean;

/**
 * Credentials are compared by their Python string form (`True`/`False` for booleans); a list
 * (the roles) matches when any element does. Credentials this service does not have, such as
 * `domain_id` or `system_scope`, never match, as when they are absent upstream; so do nulls.
 */
function credentialReader(path: string): CredentialTest {
  switch (path) {
    case 'project_id':
      return (c, value) => c.projectId !== null && c.projectId === value;
    case 'user_id':
      return (c, value) => c.userId !== null && c.userId === value;
    case 'roles':
      return (c, value) => c.roles.includes(value);
    case 'service_roles':
      return (c, value) => c.serviceRoles?.includes(value) ?? false;
    case 'is_admin':
      return (c, value) => value === (c.isAdmin ? 'True' : 'False');
    default:
      return () => false;
  }
}

function constantOf(template: Template): string | undefined {
  const [only] = template;
  return template.length === 1 && typeof only === 'string' ? only : undefined;
}

type Expand = (target: PolicyTarget) => string | undefined;

/** Substitutes target fields; undefined when any field is missing or null. */
function compileTemplate(template: Template): Expand {
  const constant = constantOf(template);
  if (constant !== undefined) return () => constant;
  const [only] = template;
  if (template.length === 1 && typeof only === 'object') return fieldReader(only.field);
  const parts = template.map((part) =>
    typeof part === 'string' ? () => part : fieldReader(part.field),
  );
  return (t) => {
    let out = '';
    for (const part of parts) {
      const value = part(t);
      if (value === undefined) return undefined;
      out += value;
    }
    return out;
  };
}

function fieldReader(field: string): Expand {
  switch (field) {
    case 'project_id':
    case 'owner':
      return (t) => t.owner ?? undefined;
    case 'member_id':
      return (t) => t.memberId ?? undefined;
    case 'visibility':
      return (t) => t.visibility;
    default:
      return (t) => pythonString(t.attributes?.[field]);
  }
}

function pythonString(value: string | number | boolean | null | undefined): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}
