import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import type { RequestContext } from '../../src/domain/context.js';
import { expandRoles } from '../../src/domain/context.js';
import { ForbiddenError } from '../../src/domain/errors.js';
import { DEFAULT_RULES, loadPolicy, Policy, PolicyFileError } from '../../src/domain/policy.js';
import type { PolicyAction, PolicyTarget, RuleSource } from '../../src/domain/policy.js';
import {
  compileRuleSet,
  MAX_REFERENCE_DEPTH,
  parseRule,
  PolicyRuleError,
  RuleSyntaxError,
} from '../../src/domain/policy/rules.js';
import type { CompiledRule, ParsedRule } from '../../src/domain/policy/rules.js';

function context(projectId: string | null, roles: string[], userId = 'u1'): RequestContext {
  const expanded = expandRoles(roles);
  return {
    requestId: 'req',
    projectId,
    userId,
    roles: expanded,
    isAdmin: expanded.includes('admin'),
  };
}

function ruleSet(rules: Record<string, RuleSource>): Map<string, CompiledRule> {
  const parsed = new Map<string, ParsedRule>();
  for (const [name, source] of Object.entries(rules)) {
    parsed.set(name, { node: parseRule(source), text: String(source) });
  }
  return compileRuleSet(parsed);
}

function compile(rule: RuleSource): CompiledRule {
  return ruleSet({ r: rule }).get('r')!;
}

const MEMBER = context('p1', ['member']);
const OWNED: PolicyTarget = { owner: 'p1', visibility: 'private', memberId: null };

function holds(rule: RuleSource, credentials = MEMBER, target = OWNED): boolean {
  return compile(rule)(credentials, target);
}

describe('rule language', () => {
  it('treats "", "@" and "!" as always, always and never', () => {
    assert.equal(holds(''), true);
    assert.equal(holds('@'), true);
    assert.equal(holds('!'), false);
  });

  it('binds "not" tighter than "and", and "and" tighter than "or"', () => {
    assert.equal(holds('! and ! or @'), true);
    assert.equal(holds('@ or ! and !'), true);
    assert.equal(holds('not ! and !'), false);
    assert.equal(holds('not @ or @'), true);
    assert.equal(holds('@ and not @ or ! and @'), false);
    assert.equal(holds('not not @'), true);
  });

  it('groups with parentheses, attached to checks or standing alone', () => {
    assert.equal(holds('(@ or !) and !'), false);
    assert.equal(holds('not (! or !)'), true);
    assert.equal(holds('((@))'), true);
    assert.equal(holds('( @ or ! ) and ( ! )'), false);
    assert.equal(holds('(role:member and (project_id:%(owner)s))'), true);
  });

  it('reads operators in any case and ignores extra whitespace', () => {
    assert.equal(holds('! OR @'), true);
    assert.equal(holds('@ And !'), false);
    assert.equal(holds('NOT !'), true);
    assert.equal(holds('  role:member \t and\n project_id:%(project_id)s  '), true);
  });

  it('checks roles case-insensitively, including substituted role names', () => {
    assert.equal(holds('role:MEMBER'), true);
    assert.equal(holds('role:admin'), false);
    assert.equal(holds('role:%(visibility)s', context('p1', ['Private']), OWNED), true);
  });

  it('substitutes %(field)s from the target, project_id and owner both being the owner', () => {
    assert.equal(holds('project_id:%(project_id)s'), true);
    assert.equal(holds('project_id:%(owner)s'), true);
    assert.equal(holds('project_id:%(owner)s', context('p2', ['member'])), false);
    const shared: PolicyTarget = { owner: 'p9', visibility: 'shared', memberId: 'p1' };
    assert.equal(holds('project_id:%(member_id)s', MEMBER, shared), true);
    assert.equal(holds('project_id:prefix-%(owner)s', context('prefix-p1', [])), true);
    assert.equal(holds('project_id:100%%', context('100%', [])), true);
  });

  it('makes a check on a missing or null target field false', () => {
    assert.equal(holds('project_id:%(member_id)s'), false);
    assert.equal(holds('not project_id:%(member_id)s'), true);
    assert.equal(holds('role:%(nothing)s'), false);
    assert.equal(holds("'public':%(visibility)s", MEMBER, { owner: 'p1' }), false);
    const orphan: PolicyTarget = { owner: null };
    assert.equal(holds('project_id:%(project_id)s', context(null, []), orphan), false);
  });

  it('compares quoted and Python literals on the left with the target', () => {
    const pub: PolicyTarget = { owner: 'p9', visibility: 'public' };
    assert.equal(holds("'public':%(visibility)s", MEMBER, pub), true);
    assert.equal(holds('"public":%(visibility)s', MEMBER, pub), true);
    assert.equal(holds("'shared':%(visibility)s", MEMBER, pub), false);
    const flagged: PolicyTarget = { owner: 'p1', attributes: { protected: true, min_disk: 5 } };
    assert.equal(holds('True:%(protected)s', MEMBER, flagged), true);
    assert.equal(holds('False:%(protected)s', MEMBER, flagged), false);
    assert.equal(holds('5:%(min_disk)s', MEMBER, flagged), true);
  });

  it('compares credentials by their string form, matching any of the roles', () => {
    const admin = context('p1', ['admin'], 'u7');
    assert.equal(holds('user_id:u7', admin), true);
    assert.equal(holds('user_id:u1', admin), false);
    assert.equal(holds('is_admin:True', admin), true);
    assert.equal(holds('is_admin:True'), false);
    assert.equal(holds('is_admin:False'), true);
    assert.equal(holds('roles:reader'), true);
    assert.equal(holds('domain_id:default'), false);
    assert.equal(holds('service_roles:service'), false);
    assert.equal(holds('service_roles:service', { ...MEMBER, serviceRoles: ['service'] }), true);
  });

  it('follows rule: references, after overrides', () => {
    const rules = ruleSet({ a: 'rule:b or rule:c', b: '!', c: 'role:member' });
    assert.equal(rules.get('a')!(MEMBER, OWNED), true);
    assert.equal(rules.get('b')!(MEMBER, OWNED), false);
  });

  it('reads the legacy list-of-lists form: or of ands', () => {
    const rule = [['role:admin'], ['role:member', 'project_id:%(owner)s']];
    assert.equal(holds(rule), true);
    assert.equal(holds(rule, context('p2', ['member'])), false);
    assert.equal(holds(rule, context('p2', ['admin'])), true);
    assert.equal(holds([]), true);
    assert.equal(holds([[]]), false);
    assert.equal(holds(['role:reader']), true);
  });

  const syntaxErrors: [string, string, number][] = [
    ['role:a or', 'rule ends where a check was expected', 10],
    ['role:a or or role:b', 'unexpected "or"', 11],
    ['role:a and (role:b', 'no ")" closes the "(" at position 12', 19],
    ['role:a) or role:b', 'unexpected ")"', 7],
    ['role:a role:b', 'unexpected "role:b"', 8],
    ['()', 'unexpected ")"', 2],
    ['admin', '"admin" is not a check (kind:match, @ or !)', 1],
    ['@ or "role:admin"', 'a quoted string is not a check', 6],
    ['  ', 'blank rule (use "" or "@" to allow all)', 1],
    ['role:a or :x', 'a check needs something before ":"', 11],
    ['rule:', '"rule:" needs a rule name', 1],
    ['http:example.com/check', 'http checks (remote policy servers) are not supported', 1],
    ['@ or project_id:%(owner)d', '"%" must start "%(field)s" or "%%"', 17],
    ["'public:%(visibility)s", "unterminated quoted string 'public", 1],
    ['('.repeat(70) + '@' + ')'.repeat(70), 'nested deeper than 64 levels', 65],
  ];
  for (const [rule, reason, position] of syntaxErrors) {
    it(`rejects ${JSON.stringify(rule.slice(0, 30))}: ${reason}`, () => {
      assert.throws(
        () => parseRule(rule),
        (error: unknown) => {
          assert.ok(error instanceof RuleSyntaxError);
          assert.equal(error.reason, reason);
          assert.equal(error.position, position);
          assert.ok(error.message.endsWith(` at position ${position} in ${JSON.stringify(rule)}`));
          return true;
        },
      );
    });
  }

  it('rejects a list rule whose item is not a check', () => {
    assert.throws(() => parseRule([['role:a', 'admin']]), /"admin" is not a check/);
  });

  it('rejects unknown references, cycles and over-long chains when compiling', () => {
    const expect = (rules: Record<string, string>, name: string, detail: string) =>
      assert.throws(
        () => ruleSet(rules),
        (error: unknown) => {
          assert.ok(error instanceof PolicyRuleError);
          assert.deepEqual([error.ruleName, error.detail], [name, detail]);
          return true;
        },
      );
    expect(
      { a: '@ or rule:nope' },
      'a',
      'refers to unknown rule "nope" at position 6 in "@ or rule:nope"',
    );
    expect({ a: 'rule:a' }, 'a', 'rule references form a cycle: a -> a');
    expect(
      { a: 'rule:b', b: 'not rule:c', c: 'rule:a' },
      'a',
      'rule references form a cycle: a -> b -> c -> a',
    );
    const chain: Record<string, string> = { r0: '@' };
    for (let i = 1; i <= MAX_REFERENCE_DEPTH + 1; i++) chain[`r${i}`] = `rule:r${i - 1}`;
    assert.doesNotThrow(() => ruleSet({ ...chain, r0: '@' }));
    const reversed = Object.fromEntries(Object.entries(chain).reverse());
    assert.throws(() => ruleSet(reversed), /rule references nest deeper than 32/);
  });
});

// ---------------------------------------------------------------------------------------------
// Default rules: who may do what to which image.

const PERSONAS = {
  admin: context('pa', ['admin']),
  member: context('p1', ['member']),
  reader: context('p1', ['reader']),
  other: context('p2', ['member']),
  none: context('p1', []),
  service: context('ps', ['service']),
};
type Persona = keyof typeof PERSONAS;
const PERSONA_ORDER = Object.keys(PERSONAS) as Persona[];

/** Image targets as the services build them; a shared image counts the caller as a member. */
const TARGETS = {
  owned: (): PolicyTarget => ({ owner: 'p1', visibility: 'private', memberId: null }),
  public: (): PolicyTarget => ({ owner: 'p9', visibility: 'public', memberId: null }),
  shared: (c: RequestContext): PolicyTarget => ({
    owner: 'p9',
    visibility: 'shared',
    memberId: c.projectId,
  }),
};
type TargetName = keyof typeof TARGETS;

/** Per target, one character per persona in PERSONAS order: "y" allowed, "." refused. */
type Profile = Readonly<Record<TargetName, string>>;
const profile = (owned: string, pub: string, shared: string): Profile => ({
  owned,
  public: pub,
  shared,
});

const ANYONE = profile('yyyyyy', 'yyyyyy', 'yyyyyy');
const ADMIN = profile('y.....', 'y.....', 'y.....');
const SERVICE = profile('y....y', 'y....y', 'y....y');
const PROJECT_MEMBER = profile('yy....', 'y.....', 'y.....');
const PROJECT_READER = profile('yyy...', 'y.....', 'y.....');
const READ_REACHABLE = profile('yyy...', 'yyyy..', 'yyyy..');
const DOWNLOAD_REACHABLE = profile('yy....', 'yy.y..', 'yy.y..');
const READ_MEMBERS = profile('yyy...', 'y.....', 'yyyy..');
const READ_NAMESPACE = profile('yyy...', 'yyyy..', 'y.....');

const EXPECTED: Record<PolicyAction, Profile> = {
  default: ANYONE,
  context_is_admin: ADMIN,
  service_api: SERVICE,
  add_image: PROJECT_MEMBER,
  get_images: PROJECT_READER,
  get_image: READ_REACHABLE,
  modify_image: PROJECT_MEMBER,
  publicize_image: ADMIN,
  communitize_image: PROJECT_MEMBER,
  delete_image: PROJECT_MEMBER,
  upload_image: PROJECT_MEMBER,
  download_image: DOWNLOAD_REACHABLE,
  download_from_store: DOWNLOAD_REACHABLE,
  deactivate: PROJECT_MEMBER,
  reactivate: PROJECT_MEMBER,
  copy_image: ADMIN,
  get_image_location: PROJECT_READER,
  set_image_location: PROJECT_MEMBER,
  delete_image_location: ADMIN,
  add_image_location: profile('yy...y', 'y....y', 'y....y'),
  fetch_image_location: SERVICE,
  add_member: PROJECT_MEMBER,
  delete_member: PROJECT_MEMBER,
  get_member: READ_MEMBERS,
  get_members: READ_MEMBERS,
  modify_member: profile('y.....', 'y.....', 'yy.y..'),
  stores_info_detail: SERVICE,
  tasks_api_access: ADMIN,
  get_task: ANYONE,
  get_tasks: ANYONE,
  add_task: ANYONE,
  modify_task: ANYONE,
  manage_image_cache: ADMIN,
  cache_image: ADMIN,
  cache_list: ADMIN,
  cache_delete: ADMIN,
  cache_clean: ADMIN,
  cache_prune: ADMIN,
  list_cached_nodes: ADMIN,
  metadef_default: ANYONE,
  metadef_admin: ADMIN,
  get_metadef_namespace: READ_NAMESPACE,
  get_metadef_namespaces: PROJECT_READER,
  add_metadef_namespace: ADMIN,
  modify_metadef_namespace: ADMIN,
  delete_metadef_namespace: ADMIN,
  get_metadef_object: READ_NAMESPACE,
  get_metadef_objects: READ_NAMESPACE,
  add_metadef_object: ADMIN,
  modify_metadef_object: ADMIN,
  delete_metadef_object: ADMIN,
  list_metadef_resource_types: READ_NAMESPACE,
  get_metadef_resource_type: READ_NAMESPACE,
  add_metadef_resource_type_association: ADMIN,
  remove_metadef_resource_type_association: ADMIN,
  get_metadef_property: READ_NAMESPACE,
  get_metadef_properties: READ_NAMESPACE,
  add_metadef_property: ADMIN,
  modify_metadef_property: ADMIN,
  remove_metadef_property: ADMIN,
  get_metadef_tag: READ_NAMESPACE,
  get_metadef_tags: READ_NAMESPACE,
  add_metadef_tag: ADMIN,
  add_metadef_tags: ADMIN,
  modify_metadef_tag: ADMIN,
  delete_metadef_tag: ADMIN,
  delete_metadef_tags: ADMIN,
};

/** The profile a policy actually gives a rule, in the same notation as EXPECTED. */
function observe(policy: Policy, action: PolicyAction): Profile {
  const row = (name: TargetName) =>
    PERSONA_ORDER.map((persona) => {
      const caller = PERSONAS[persona];
      return policy.allows(action, caller, TARGETS[name](caller)) ? 'y' : '.';
    }).join('');
  return profile(row('owned'), row('public'), row('shared'));
}

describe('default rules', () => {
  const policy = new Policy();

  it('has an expectation for every default rule', () => {
    assert.deepEqual(Object.keys(EXPECTED).sort(), Object.keys(DEFAULT_RULES).sort());
  });

  for (const action of Object.keys(EXPECTED) as PolicyAction[]) {
    it(`${action}: admin, member, reader, other project, no roles, service`, () => {
      assert.deepEqual(observe(policy, action), EXPECTED[action]);
    });
  }

  it('lets only a member of the requested owner project create an image', () => {
    const target: PolicyTarget = { owner: 'p2' };
    assert.equal(policy.allows('add_image', PERSONAS.member, target), false);
    assert.equal(policy.allows('add_image', PERSONAS.admin, target), true);
  });

  it('enforce throws ForbiddenError naming the action', () => {
    assert.throws(
      () => policy.enforce('publicize_image', PERSONAS.member, TARGETS.owned()),
      (error: unknown) =>
        error instanceof ForbiddenError &&
        error.message === 'You are not authorized to complete publicize_image action.',
    );
    assert.doesNotThrow(() => policy.enforce('get_image', PERSONAS.reader, TARGETS.owned()));
  });

  it('is what loadPolicy(null) returns', () => {
    const loaded = loadPolicy(null);
    for (const action of Object.keys(EXPECTED) as PolicyAction[]) {
      assert.deepEqual(observe(loaded, action), EXPECTED[action], action);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Override files

describe('policy files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'glimpse-policy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };

  it('overrides defaults by name from YAML, and adds rules for rule: references', () => {
    const path = write(
      'policy.yaml',
      [
        '# Only image owners may publicize, and admins are "cloud_admin" people.',
        '"context_is_admin": "role:cloud_admin"',
        'owner_member: "role:member and project_id:%(project_id)s"',
        "publicize_image: 'rule:context_is_admin or rule:owner_member'",
        '',
      ].join('\n'),
    );
    const policy = loadPolicy(path);
    const cloudAdmin = context('px', ['cloud_admin']);
    assert.equal(policy.allows('publicize_image', PERSONAS.member, TARGETS.owned()), true);
    assert.equal(policy.allows('publicize_image', PERSONAS.other, TARGETS.owned()), false);
    // Rules built on context_is_admin follow the override.
    assert.equal(policy.allows('delete_image', PERSONAS.admin, TARGETS.owned()), false);
    assert.equal(policy.allows('delete_image', cloudAdmin, TARGETS.owned()), true);
    // Rules the file does not name keep their text; a plain admin now reads only as a reader.
    assert.deepEqual(observe(policy, 'get_image'), profile('.yy...', 'yyyy..', 'yyyy..'));
    assert.deepEqual(observe(policy, 'get_images'), profile('.yy...', '......', '......'));
  });

  it('reads JSON, including the legacy list-of-lists form', () => {
    const path = write(
      'policy.json',
      JSON.stringify({ get_image: [['role:admin'], ['role:member', 'project_id:%(owner)s']] }),
    );
    const policy = loadPolicy(path);
    assert.deepEqual(observe(policy, 'get_image'), profile('yy....', 'y.....', 'y.....'));
  });

  it('reads a YAML list-of-lists rule and treats an empty file as no overrides', () => {
    const path = write('lists.yaml', 'delete_image:\n  - ["!"]\n');
    assert.deepEqual(
      observe(loadPolicy(path), 'delete_image'),
      profile('......', '......', '......'),
    );
    const empty = write('empty.yaml', '# nothing overridden\n');
    assert.deepEqual(observe(loadPolicy(empty), 'delete_image'), EXPECTED.delete_image);
  });

  const malformed: [string, string, string][] = [
    ['bad.yaml', 'get_image: "role:admin\nadd_image: x\n', 'not valid YAML: '],
    ['dupe.yaml', 'get_image: "@"\nget_image: "!"\n', 'not valid YAML: Map keys must be unique'],
    ['bad.json', '{"get_image": "role:admin",}', 'not valid JSON: '],
    ['list.yaml', '- get_image\n', 'the top level must be a mapping of rule names to rules'],
    [
      'scalar.yaml',
      'get_image:\n',
      'rule "get_image": must be a rule string (or a list of lists of checks)',
    ],
    [
      'number.json',
      '{"get_image": 1}',
      'rule "get_image": must be a rule string (or a list of lists of checks)',
    ],
    [
      'syntax.yaml',
      'get_image: "role:admin or or role:member"\n',
      'rule "get_image": unexpected "or" at position 15 in "role:admin or or role:member"',
    ],
    [
      'unknown.yaml',
      'get_image: "role:admin or rule:get_image_owner"\n',
      'rule "get_image": refers to unknown rule "get_image_owner" at position 15' +
        ' in "role:admin or rule:get_image_owner"',
    ],
    [
      'cycle.yaml',
      'context_is_admin: "rule:admins"\nadmins: "rule:context_is_admin or role:root"\n',
      'rule "context_is_admin": rule references form a cycle:' +
        ' context_is_admin -> admins -> context_is_admin',
    ],
  ];
  for (const [name, text, detail] of malformed) {
    it(`reports ${name}: ${detail.split(':')[0]}`, () => {
      const path = write(name, text);
      assert.throws(
        () => loadPolicy(path),
        (error: unknown) => {
          assert.ok(error instanceof PolicyFileError);
          assert.equal(error.path, path);
          assert.ok(
            error.message.startsWith(`Invalid policy file ${path}: ${detail}`),
            error.message,
          );
          return true;
        },
      );
    });
  }

  it('checks rules by name, and adds extra rules after the file', () => {
    const path = write('named.yaml', 'creators: "role:creator or rule:context_is_admin"\n');
    const extra = { 'x_.*:create': 'rule:creators', 'x_.*:read': '@' };
    const policy = loadPolicy(path, extra);
    assert.equal(policy.allowsRule('x_.*:create', context('p1', ['creator'])), true);
    assert.equal(policy.allowsRule('x_.*:create', PERSONAS.member), false);
    assert.equal(policy.allowsRule('x_.*:read', PERSONAS.none), true);
    assert.equal(policy.allowsRule('creators', PERSONAS.admin), true);
    assert.equal(policy.allowsRule('no_such_rule', PERSONAS.admin), false);
    // Without a target every substitution is missing.
    assert.equal(policy.allowsRule('modify_image', PERSONAS.member), false);
    assert.equal(
      loadPolicy(null, { mine: 'role:reader' }).allowsRule('mine', PERSONAS.reader),
      true,
    );
  });

  it('reports a bad extra rule against the file, or alone without one', () => {
    const path = write('plain.yaml', 'get_image: "@"\n');
    const extra = { 'x:create': 'rule:creators' };
    const detail = 'rule "x:create": refers to unknown rule "creators" at position 1';
    assert.throws(
      () => loadPolicy(path, extra),
      (error: unknown) => {
        assert.ok(error instanceof PolicyFileError);
        assert.ok(error.message.startsWith(`Invalid policy file ${path}: ${detail}`));
        return true;
      },
    );
    assert.throws(
      () => loadPolicy(null, extra),
      (error: unknown) => error instanceof PolicyRuleError && error.message.startsWith(detail),
    );
  });

  it('reports a file that cannot be read', () => {
    const path = join(dir, 'missing.yaml');
    assert.throws(
      () => loadPolicy(path),
      (error: unknown) =>
        error instanceof PolicyFileError &&
        error.message.startsWith(`Invalid policy file ${path}: cannot be read: ENOENT`),
    );
  });
});
