/**
 * The keystone scenario group: what token validation costs the busiest read, GET
 * /v2/images/{id} at concurrency 32, against the same images and the same kind of caller (a
 * member of project alpha) in noauth and in keystone mode. The token is obtained once and reused,
 * so after its first request the server answers from its token cache, as it does for a client
 * that keeps its token.
 *
 * Both servers run at once on one data directory, and their runs alternate, so that load from
 * other work on the machine falls on both modes alike.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Request } from 'autocannon';
import { request } from 'undici';

import { runLoad, type LoadResult } from './load.js';
import { formatNumber, table, type BenchSettings, type GroupReport } from './report.js';
import type { ScenarioGroup, TargetCheck } from './report.js';
import { startServer, type RunningServer } from './server-process.js';

const KEYSTONE_URL = 'http://127.0.0.1:5000/v3';
/** Password of the fixture users and of the glimpse service user (scripts/keystone.sh). */
const PASSWORD = 'secret';
const DOMAIN = 'Default';
const PROBE_TIMEOUT_MS = 5_000;

const IMAGE_COUNT = 2_000;
const FILL_CONCURRENCY = 16;
const CONNECTIONS = 32;
const ROUNDS = 2;
const WARMUP_SECONDS = 1;
/** Keystone mode may cost at most this share of noauth throughput. */
const MAX_COST = 0.1;

type Mode = 'noauth' | 'keystone';

interface Token {
  token: string;
  projectId: string;
  userId: string;
  roles: string[];
}

interface ModeRun {
  mode: Mode;
  round: number;
  result: LoadResult;
}

/** A project-scoped token for alpha-member, or why there is none. */
async function memberToken(): Promise<Token | string> {
  const user = { name: 'alpha-member', domain: { name: DOMAIN }, password: PASSWORD };
  const auth = {
    identity: { methods: ['password'], password: { user } },
    scope: { project: { name: 'alpha', domain: { name: DOMAIN } } },
  };
  try {
    const response = await fetch(`${KEYSTONE_URL}/auth/tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ auth }),
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    const text = await response.text();
    const token = response.headers.get('x-subject-token');
    if (response.status !== 201 || token === null) {
      return `Keystone at ${KEYSTONE_URL} refused a token: ${response.status} ${text}`;
    }
    const body = JSON.parse(text) as {
      token: { project: { id: string }; user: { id: string }; roles: Array<{ name: string }> };
    };
    const { project, user: who, roles } = body.token;
    return { token, projectId: project.id, userId: who.id, roles: roles.map((r) => r.name) };
  } catch (error) {
    return `Keystone at ${KEYSTONE_URL} is unreachable (${(error as Error).message})`;
  }
}

/** The identity a Keystone middleware would pass on, as noauth mode trusts it. */
function noauthHeaders(token: Token): Record<string, string> {
  return {
    'x-project-id': token.projectId,
    'x-user-id': token.userId,
    'x-roles': token.roles.join(','),
  };
}

/** Private images of project alpha, made through the noauth server as alpha-member. */
async function fill(url: string, headers: Record<string, string>): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < IMAGE_COUNT) {
      const index = next++;
      const response = await request(`${url}/v2/images`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify({
          name: `img-${index}`,
          disk_format: 'raw',
          container_format: 'bare',
        }),
      });
      const text = await response.body.text();
      if (response.statusCode !== 201) throw new Error(`creating an image: ${text}`);
      ids.push((JSON.parse(text) as { id: string }).id);
    }
  };
  await Promise.all(Array.from({ length: FILL_CONCURRENCY }, worker));
  return ids;
}

function showRequests(ids: string[], headers: Record<string, string>): Request[] {
  const pick = () => ids[Math.floor(Math.random() * ids.length)] ?? '';
  return [
    {
      method: 'GET',
      headers,
      setupRequest: (req) => ({ ...req, path: `/v2/images/${pick()}` }),
    },
  ];
}

/** Options go in glimpse.json, read from the server's working directory, the data directory. */
async function start(dataDir: string, options: Record<string, unknown>): Promise<RunningServer> {
  await writeFile(join(dataDir, 'glimpse.json'), JSON.stringify(options));
  return startServer({ dataDir, databaseUrl: '' });
}

interface Target {
  mode: Mode;
  server: RunningServer;
  ids: string[];
  headers: Record<string, string>;
}

function load(target: Target, seconds: number): Promise<LoadResult> {
  return runLoad({
    url: target.server.url,
    connections: CONNECTIONS,
    durationSeconds: seconds,
    requests: showRequests(target.ids, target.headers),
    serverPid: target.server.pid,
    databaseCommand: null,
  });
}

/**
 * One request each, even with --quick: the keystone server's first answer waits for its own
 * service token and the validation of the caller's, which is not what is measured.
 */
async function prime(target: Target): Promise<void> {
  const path = `/v2/images/${target.ids[0] ?? ''}`;
  const response = await request(`${target.server.url}${path}`, { headers: target.headers });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`${target.mode} ${path}: ${text}`);
}

async function alternate(targets: Target[], settings: BenchSettings): Promise<ModeRun[]> {
  for (const target of targets) await prime(target);
  if (!settings.quick) {
    for (const target of targets) await load(target, WARMUP_SECONDS);
  }
  const runs: ModeRun[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const result = await load(target, settings.durationSeconds);
      settings.log(
        `  ${target.mode} round ${round}: ${Math.round(result.perSecond)} req/s, ` +
          `non-2xx ${result.non2xx}, errors ${result.errors}`,
      );
      runs.push({ mode: target.mode, round, result });
    }
  }
  return runs;
}

async function measureModes(token: Token, settings: BenchSettings): Promise<ModeRun[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-bench-keystone-'));
  const servers: RunningServer[] = [];
  try {
    const noauth = await start(dataDir, {});
    servers.push(noauth);
    const ids = await fill(noauth.url, noauthHeaders(token));
    const keystone = await start(dataDir, {
      auth_strategy: 'keystone',
      keystone_auth_url: KEYSTONE_URL,
      keystone_password: PASSWORD,
    });
    servers.push(keystone);
    const headers = { 'x-auth-token': token.token };
    return await alternate(
      [
        { mode: 'noauth', server: noauth, ids, headers: noauthHeaders(token) },
        { mode: 'keystone', server: keystone, ids, headers },
      ],
      settings,
    );
  } finally {
    for (const server of servers) await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Report

interface Totals {
  perSecond: number;
  /** Server CPU per request, µs. */
  cpuMicros: number;
  failures: number;
}

function totals(runs: ModeRun[], mode: Mode): Totals {
  const own = runs.filter((run) => run.mode === mode).map((run) => run.result);
  const requests = own.reduce((sum, result) => sum + result.requests, 0);
  const seconds = own.reduce((sum, result) => sum + result.seconds, 0);
  const cpuSeconds = own.reduce((sum, r) => sum + (r.cpu.server / 100) * r.seconds, 0);
  return {
    perSecond: seconds > 0 ? requests / seconds : 0,
    cpuMicros: requests > 0 ? (cpuSeconds * 1e6) / requests : 0,
    failures: own.reduce((sum, result) => sum + result.non2xx + result.errors, 0),
  };
}

const TARGET = `Keystone-mode show, c=${CONNECTIONS}: < ${MAX_COST * 100}% below noauth req/s`;

function target(runs: ModeRun[]): TargetCheck {
  const noauth = totals(runs, 'noauth');
  const keystone = totals(runs, 'keystone');
  const cost = 1 - keystone.perSecond / noauth.perSecond;
  const change = `${formatNumber(Math.abs(cost) * 100, 1)}% ${cost >= 0 ? 'less' : 'more'}`;
  return {
    target: TARGET,
    measured:
      `${formatNumber(keystone.perSecond)} vs ${formatNumber(noauth.perSecond)} req/s ` +
      `(${change}; server CPU ${formatNumber(keystone.cpuMicros)} vs ` +
      `${formatNumber(noauth.cpuMicros)} µs/req), ${keystone.failures + noauth.failures} ` +
      'non-2xx/errors',
    met: cost < MAX_COST && keystone.failures + noauth.failures === 0,
  };
}

function runsTable(runs: ModeRun[]): string {
  const rows = runs.map(({ mode, round, result }) => [
    mode,
    String(round),
    formatNumber(result.perSecond),
    formatNumber(result.p50Ms, 2),
    formatNumber(result.p99Ms, 2),
    formatNumber(result.non2xx + result.errors),
    result.seconds.toFixed(1),
    result.perSecond > 0 ? formatNumber((result.cpu.server * 10_000) / result.perSecond) : '',
    `${result.cpu.server} / ${result.cpu.client} / ${result.cpu.other}`,
  ]);
  const headers = ['Mode', 'Round', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx + errors', 'run s'];
  headers.push('server µs CPU/req', 'CPU % server / client / other');
  return table(headers, rows, new Set([1, 2, 3, 4, 5, 6, 7]));
}

function notes(settings: BenchSettings): string {
  return [
    `- ${formatNumber(IMAGE_COUNT)} private images of project alpha; each request shows ` +
      `one at random, over ${CONNECTIONS} keep-alive connections, for ` +
      `${settings.durationSeconds} s per run.`,
    '- noauth: the requests carry the identity headers of alpha-member (X-Project-Id, ' +
      'X-User-Id, X-Roles), so the policy work is the same as in keystone mode.',
    `- keystone: \`auth_strategy=keystone\` against the Keystone at ${KEYSTONE_URL}; the ` +
      'requests carry one token of alpha-member, obtained once before the runs, so the server ' +
      'validates it with Keystone once, on a request made before the runs, and then answers ' +
      'from its token cache.',
    `- Both servers run at the same time on the same data; runs alternate, ${ROUNDS} rounds, ` +
      `after a ${WARMUP_SECONDS} s warm-up of each (none with --quick). The target compares ` +
      'requests over seconds summed across rounds.',
  ].join('\n');
}

export const keystoneGroup: ScenarioGroup = {
  name: 'keystone',
  async run(settings): Promise<GroupReport> {
    const title = 'Keystone token validation';
    const token = await memberToken();
    if (typeof token === 'string') {
      settings.log(`keystone: not measured: ${token}`);
      const reason = `${token}. Start it with \`scripts/keystone.sh start\`.`;
      return {
        title,
        sections: [reason],
        targets: [{ target: TARGET, measured: token, met: null }],
      };
    }
    settings.log('keystone: show in noauth and keystone mode');
    const runs = await measureModes(token, settings);
    return { title, sections: [notes(settings), runsTable(runs)], targets: [target(runs)] };
  },
};
