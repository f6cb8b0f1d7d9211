/**
 * Running qemu-img on staged data. Arguments are passed as a list (no shell), formats come from
 * fixed tables, and paths are made absolute so that neither can be read as an option or as a
 * qemu protocol prefix. Every run has a deadline; `info` also runs under resource limits when
 * prlimit is installed, because parsing a hostile header is where qemu-img has been abused.
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';

const INFO_TIMEOUT_MS = 60_000;
const CONVERT_TIMEOUT_MS = 10 * 60_000;
const INFO_MAX_OUTPUT = 1024 * 1024;
const CONVERT_MAX_OUTPUT = 64 * 1024;
/** Limits of `info`: CPU seconds and address space (upstream limits these two as well). */
const INFO_LIMITS = ['--cpu=30', `--as=${1024 * 1024 * 1024}`];
/** Longest piece of qemu-img's own words repeated to the user. */
const MAX_REASON = 300;

/** What `qemu-img info --output=json` says about the checks we make. */
export interface QemuImageInfo {
  format: string | null;
  virtualSize: number | null;
  backingFile: string | null;
  dataFile: string | null;
  vmdkCreateType: string | null;
}

export class QemuImg {
  #prlimit: Promise<string | null> | null = null;

  constructor(private readonly executable: string) {}

  async info(path: string, driver: string): Promise<QemuImageInfo> {
    const file = resolve(path);
    const args = ['info', '-f', driver, '--output=json', file];
    const limited = await this.#limited(args);
    const stdout = await run(limited.command, limited.args, {
      timeout: INFO_TIMEOUT_MS,
      maxBuffer: INFO_MAX_OUTPUT,
      what: 'inspect',
      paths: [file],
    });
    return parseInfo(stdout);
  }

  async convert(source: string, from: string, target: string, to: string): Promise<void> {
    const [input, output] = [resolve(source), resolve(target)];
    await run(this.executable, ['convert', '-f', from, '-O', to, input, output], {
      timeout: CONVERT_TIMEOUT_MS,
      maxBuffer: CONVERT_MAX_OUTPUT,
      what: 'convert',
      paths: [input, output],
    });
  }

  async #limited(args: string[]): Promise<{ command: string; args: string[] }> {
    this.#prlimit ??= findExecutable('prlimit');
    const prlimit = await this.#prlimit;
    if (prlimit === null) return { command: this.executable, args };
    return { command: prlimit, args: [...INFO_LIMITS, '--', this.executable, ...args] };
  }
}

interface RunOptions {
  timeout: number;
  maxBuffer: number;
  what: string;
  /** Server paths, replaced in anything shown to the user. */
  paths: string[];
}

function run(command: string, args: string[], options: RunOptions): Promise<string> {
  return new Promise((done, fail) => {
    const settings = {
      encoding: 'utf8' as const,
      timeout: options.timeout,
      maxBuffer: options.maxBuffer,
      killSignal: 'SIGKILL' as const,
      shell: false,
    };
    execFile(command, args, settings, (error, stdout, stderr) => {
      if (error === null) return done(stdout);
      const reason = reasonOf(error, stderr, options);
      fail(new Error(`qemu-img could not ${options.what} the image: ${reason}`));
    });
  });
}

function reasonOf(
  error: Error & { code?: unknown; killed?: boolean; signal?: unknown },
  stderr: string,
  options: RunOptions,
): string {
  if (error.code === 'ENOENT') return 'qemu-img is not installed';
  if (error.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') return 'it wrote too much output';
  if (error.killed === true) return `it did not finish within ${options.timeout / 1000} s`;
  let text = stderr.trim() || String(error.signal ?? error.code ?? 'it failed');
  for (const [index, path] of options.paths.entries()) {
    text = text.split(path).join(index === 0 ? '<image>' : '<output>');
  }
  return text.replace(/\s+/g, ' ').slice(0, MAX_REASON);
}

function parseInfo(stdout: string): QemuImageInfo {
  let info: unknown;
  try {
    info = JSON.parse(stdout);
  } catch {
    throw new Error('qemu-img could not inspect the image: its report is not JSON');
  }
  const data = field(field(info, 'format-specific'), 'data');
  return {
    format: text(field(info, 'format')),
    virtualSize: count(field(info, 'virtual-size')),
    backingFile: text(field(info, 'backing-filename') ?? field(info, 'full-backing-filename')),
    dataFile: text(field(data, 'data-file')),
    vmdkCreateType: text(field(data, 'create-type')),
  };
}

function field(value: unknown, name: string): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  return (value as Record<string, unknown>)[name];
}

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null;
}

/** The absolute path of `name` on PATH, or null. */
async function findExecutable(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    const found = await access(candidate, constants.X_OK).then(
      () => true,
      () => false,
    );
    if (found) return candidate;
  }
  return null;
}
