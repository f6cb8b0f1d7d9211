/**
 * The shape every scenario group reports in, and the Markdown of bench/RESULTS.md. A group
 * (image metadata today, the data path later) returns its own sections and target checks; this
 * module adds the header, the machine and a summary of all targets.
 */
import type { MachineInfo } from './machine.js';

export interface BenchSettings {
  durationSeconds: number;
  quick: boolean;
  databases: DatabaseKind[];
  /** Progress lines for the person watching; the report is written at the end. */
  log(message: string): void;
}

export type DatabaseKind = 'sqlite' | 'postgres';

export interface TargetCheck {
  target: string;
  measured: string;
  /** null: could not be measured in this run (e.g. PostgreSQL unavailable). */
  met: boolean | null;
}

export interface GroupReport {
  title: string;
  /** Markdown blocks, each rendered after the group's title. */
  sections: string[];
  targets: TargetCheck[];
}

export interface ScenarioGroup {
  /** Name for `--only`. */
  readonly name: string;
  run(settings: BenchSettings): Promise<GroupReport>;
}

export interface ReportHeader {
  command: string;
  date: Date;
  machine: MachineInfo;
  /** Versions of what was measured against, e.g. "PostgreSQL 15.2". */
  software: string[];
  notes: string[];
}

export function table(headers: string[], rows: string[][], rightAligned = new Set<number>()) {
  const rule = headers.map((_, index) => (rightAligned.has(index) ? '---:' : '---'));
  return [headers, rule, ...rows].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

export function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function verdict(met: boolean | null): string {
  if (met === null) return 'not measured';
  return met ? 'met' : '**not met**';
}

function machineLines(header: ReportHeader): string[] {
  const { machine } = header;
  return [
    `- CPU: ${machine.cpus} × ${machine.cpuModel} (nproc ${machine.cpus})`,
    `- Memory: ${machine.memoryGiB} GiB`,
    `- Node.js ${machine.node.replace(/^v/, '')}, Linux ${machine.kernel}`,
    ...header.software.map((line) => `- ${line}`),
  ];
}

export function renderReport(header: ReportHeader, groups: GroupReport[]): string {
  const targets = groups.flatMap((group) => group.targets);
  const summary = table(
    ['Target', 'Measured', 'Verdict'],
    targets.map((check) => [check.target, check.measured, verdict(check.met)]),
  );
  const parts = [
    '# Benchmark results',
    [
      `Command: \`${header.command}\``,
      '',
      `Date: ${header.date.toISOString().replace(/\.\d+Z$/, 'Z')}`,
    ].join('\n'),
    ['## Machine', '', ...machineLines(header)].join('\n'),
    ['## How it was measured', '', ...header.notes.map((note) => `- ${note}`)].join('\n'),
    `## Targets\n\n${summary}`,
    ...groups.map((group) => [`## ${group.title}`, ...group.sections].join('\n\n')),
  ];
  return `${parts.join('\n\n')}\n`;
}
