/** What the figures were measured on, and how busy each process was while measuring. */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  kernel: string;
}

export function machineInfo(): MachineInfo {
  let cpuModel = 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    cpuModel = match?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux: the model stays unknown.
  }
  return {
    cpus: availableParallelism(),
    cpuModel,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    kernel: release(),
  };
}

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every common Linux build. */
const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User plus system CPU seconds of one process, or 0 when it cannot be read. */
function processCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

function commandOf(pid: string): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
  } catch {
    return '';
  }
}

/** CPU seconds of each process with this command name (e.g. every PostgreSQL backend). */
function commandCpuSeconds(command: string): Map<number, number> {
  const seconds = new Map<number, number>();
  try {
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid) || commandOf(pid) !== command) continue;
      // 0 also means the process exited while being read: leave it out.
      const cpu = processCpuSeconds(Number(pid));
      if (cpu > 0) seconds.set(Number(pid), cpu);
    }
  } catch {
    // No /proc: report nothing rather than fail the benchmark.
  }
  return seconds;
}

/**
 * CPU used between two per-process readings. A process that exited in between (a pooled
 * connection closed when idle) takes its time with it: it is left out, never subtracted.
 */
function cpuBetween(from: Map<number, number>, to: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of to) total += Math.max(0, seconds - (from.get(pid) ?? 0));
  return total;
}

/** Busy CPU seconds of the whole machine, all cores together, from /proc/stat. */
function machineCpuSeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = ticks.reduce((sum, value, index) =>
      index === 3 || index === 4 ? sum : sum + value,
    );
    return busy / TICKS_PER_SECOND;
  } catch {
    return 0;
  }
}

/** Share of one core (100 = one core fully busy) used by each party over an interval. */
export interface CpuShares {
  server: number;
  client: number;
  /** PostgreSQL processes; null for SQLite, which runs inside the server. */
  database: number | null;
  /** Everything else on the machine: other people's work competing for the same cores. */
  other: number;
}

/** Cumulative CPU seconds of each party at one moment. */
export interface CpuSnapshot {
  at: number;
  server: number;
  client: number;
  database: Map<number, number>;
  machine: number;
}

/** Pids of a process's children (the API workers of a server started with `workers`). */
function childPids(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) children.push(Number(entry));
    }
  } catch {
    // A process that ended while listed; its CPU is lost either way.
  }
  return children;
}

/** CPU seconds of the server and of its worker processes together. */
function serverCpuSeconds(pid: number): number {
  return (
    childPids(pid).reduce((sum, child) => sum + processCpuSeconds(child), 0) +
    processCpuSeconds(pid)
  );
}

export function cpuSnapshot(serverPid: number, databaseCommand: string | null): CpuSnapshot {
  const client = process.cpuUsage();
  return {
    at: performance.now(),
    server: serverCpuSeconds(serverPid),
    client: (client.user + client.system) / 1e6,
    database: databaseCommand === null ? new Map() : commandCpuSeconds(databaseCommand),
    machine: machineCpuSeconds(),
  };
}

/**
 * CPU shares between two snapshots. Backends that exit in between take their CPU time with
 * them, so the database share is a lower bound.
 */
export function cpuShares(from: CpuSnapshot, to: CpuSnapshot, hasDatabase: boolean): CpuShares {
  const seconds = (to.at - from.at) / 1000;
  const share = (cpu: number) => (seconds > 0 ? Math.round((cpu / seconds) * 100) : 0);
  const server = share(to.server - from.server);
  const client = share(to.client - from.client);
  const database = share(cpuBetween(from.database, to.database));
  const other = Math.max(0, share(to.machine - from.machine) - server - client - database);
  return { server, client, database: hasDatabase ? database : null, other };
}
