/**
 * One load run with autocannon, in this process. Latencies are taken from autocannon's
 * per-response event rather than its histogram, which keeps whole milliseconds only and
 * would report most sub-millisecond answers as 0 or 1 ms.
 */
import autocannon, { type Request, type Result } from 'autocannon';

import { cpuShares, cpuSnapshot, type CpuShares, type CpuSnapshot } from './machine.js';

export interface LoadOptions {
  url: string;
  connections: number;
  durationSeconds: number;
  requests: Request[];
  /** Stop after this many requests even if time remains (a pool of ids ran out). */
  maxRequests?: number;
  /** Whose CPU to report: the server process and, for PostgreSQL, its backends. */
  serverPid: number;
  databaseCommand: string | null;
}

export interface LoadResult {
  connections: number;
  requests: number;
  /** From the first request to the last answer; shorter than asked when maxRequests hit. */
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  /** Connection errors and timeouts. */
  errors: number;
  statusCounts: Record<string, number>;
  cpu: CpuShares;
}

/** Latencies in a growable typed array: no boxing, cheap to sort. */
class Samples {
  #values = new Float64Array(1 << 16);
  #length = 0;

  add(value: number): void {
    if (this.#length === this.#values.length) {
      const larger = new Float64Array(this.#values.length * 2);
      larger.set(this.#values);
      this.#values = larger;
    }
    this.#values[this.#length++] = value;
  }

  get length(): number {
    return this.#length;
  }

  percentiles(...ranks: number[]): number[] {
    const sorted = this.#values.subarray(0, this.#length).sort();
    return ranks.map((rank) => {
      if (sorted.length === 0) return 0;
      return sorted[Math.min(sorted.length - 1, Math.floor(rank * sorted.length))] ?? 0;
    });
  }
}

const CPU_SAMPLE_MS = 250;

/**
 * Samples CPU counters while the load runs. autocannon idles up to a second after its last
 * answer; the share is taken up to the last sample before that idle tail so it is not diluted.
 */
function sampleCpu(options: LoadOptions) {
  const snap = () => cpuSnapshot(options.serverPid, options.databaseCommand);
  const first = snap();
  const samples: CpuSnapshot[] = [first];
  const timer = setInterval(() => samples.push(snap()), CPU_SAMPLE_MS);
  return (lastAnswer: number): CpuShares => {
    clearInterval(timer);
    const busy = samples.filter((sample) => sample.at <= lastAnswer);
    const last = busy.length > 1 ? (busy.at(-1) ?? first) : snap();
    return cpuShares(first, last, options.databaseCommand !== null);
  };
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const samples = new Samples();
  const endCpu = sampleCpu(options);
  const started = performance.now();
  let lastAnswer = started;

  const result = await new Promise<Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationSeconds,
        maxOverallRequests: options.maxRequests,
        requests: options.requests,
        // The default 1 s would leave up to a second idle after the last answer.
        sampleInt: 100,
      },
      (error, finished) => (error ? reject(error) : resolve(finished)),
    );
    instance.on('response', (_client, _status, _bytes, millis) => {
      samples.add(millis);
      lastAnswer = performance.now();
    });
  });

  const seconds = (lastAnswer - started) / 1000;
  const cpu = endCpu(lastAnswer);
  const [p50, p99] = samples.percentiles(0.5, 0.99);
  return {
    connections: options.connections,
    requests: samples.length,
    seconds,
    perSecond: seconds > 0 ? samples.length / seconds : 0,
    p50Ms: p50 ?? 0,
    p99Ms: p99 ?? 0,
    non2xx: result.non2xx,
    errors: result.errors,
    statusCounts: Object.fromEntries(
      Object.entries(result.statusCodeStats).map(([code, stat]) => [code, stat.count]),
    ),
    cpu,
  };
}
