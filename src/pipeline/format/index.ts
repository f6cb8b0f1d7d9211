/**
 * Disk-image format inspection while an upload streams (section 10 of the API digest).
 *
 * Every chunk is offered to one inspector per format. Each keeps only the few header regions
 * it needs, stops asking for data once its answer is settled, and is dropped from the
 * candidates if it cannot parse what it sees. After the last chunk, `finish()` decides which
 * format the data is, compares it with the declared `disk_format`, and runs the safety checks
 * of the chosen format, which guard consumers such as qemu against images that reference
 * host files or carry features nobody has reviewed.
 */
import type { DetectedFormat, Inspector } from './common.js';
import { GptInspector } from './gpt.js';
import { IsoInspector } from './iso.js';
import { LuksInspector } from './luks.js';
import { Qcow2Inspector } from './qcow2.js';
import { QedInspector } from './qed.js';
import { RawInspector } from './raw.js';
import { VdiInspector } from './vdi.js';
import { VhdInspector } from './vhd.js';
import { VhdxInspector } from './vhdx.js';
import { VmdkInspector } from './vmdk.js';

export type { DetectedFormat } from './common.js';

export interface FormatInspector {
  /**
   * Feed the next chunk of the image stream, in order. Cheap: only bounded header regions are
   * copied, never whole chunks, so the caller may reuse `chunk` afterwards.
   */
  push(chunk: Uint8Array): void;

  /** Called after the last chunk. Returns the verdict for the declared disk_format. */
  finish(declaredDiskFormat: string): FormatVerdict;
}

export type FormatVerdict =
  | { ok: true; detected: DetectedFormat; virtualSize: number | null; warning?: string }
  | { ok: false; reason: 'mismatch' | 'unsafe' | 'invalid'; message: string };

export interface FormatInspectorOptions {
  /** GPT check names whose failure only warns (`[image_format] gpt_safety_checks_nonfatal`). */
  gptSafetyChecksNonfatal?: string[];
}

/** Formats with an inspector; any other declared format (ami, aki, ploop…) cannot be checked. */
const INSPECTABLE: ReadonlySet<string> = new Set<DetectedFormat>([
  'raw',
  'qcow2',
  'qed',
  'vhd',
  'vhdx',
  'vmdk',
  'vdi',
  'iso',
  'gpt',
  'luks',
]);

export function createFormatInspector(options?: FormatInspectorOptions): FormatInspector {
  return new StreamInspector(options?.gptSafetyChecksNonfatal ?? []);
}

interface Choice {
  inspector: Inspector;
  virtualSize: bigint | null;
  warnings: string[];
}

type Failure = Extract<FormatVerdict, { ok: false }>;

class StreamInspector implements FormatInspector {
  private readonly raw = new RawInspector();
  private readonly candidates: Inspector[] = [
    new Qcow2Inspector(),
    new QedInspector(),
    new VhdInspector(),
    new VhdxInspector(),
    new VmdkInspector(),
    new VdiInspector(),
    new IsoInspector(),
    new GptInspector(),
    new LuksInspector(),
  ];

  /** The candidates still asking for data: the only ones a chunk is offered to. */
  private feeding: Inspector[] = [...this.candidates];
  private readonly dropped = new Set<Inspector>();
  private total = 0;
  private ended = false;

  constructor(private readonly gptNonfatal: readonly string[]) {}

  push(chunk: Uint8Array): void {
    if (this.ended) throw new Error('format inspector: push() after finish()');

    const start = this.total;
    this.total += chunk.length;
    if (chunk.length === 0 || this.feeding.length === 0) return;

    let settled = false;
    for (const inspector of this.feeding) {
      this.guard(inspector, () => inspector.push(chunk, start));
      settled ||= !inspector.wantsData || this.dropped.has(inspector);
    }
    if (settled) this.feeding = this.feeding.filter((i) => i.wantsData && !this.dropped.has(i));
  }

  finish(declaredDiskFormat: string): FormatVerdict {
    if (!this.ended) {
      this.ended = true;
      this.feeding = [];
      for (const inspector of this.live()) this.guard(inspector, () => inspector.end(this.total));
    }

    try {
      return this.verdict(declaredDiskFormat);
    } catch {
      return { ok: false, reason: 'invalid', message: 'Image format inspection failed' };
    }
  }

  private verdict(declared: string): FormatVerdict {
    const detected = this.detect();
    if ('ok' in detected) return detected;

    const choice = this.compare(detected, declared);
    if ('ok' in choice) return choice;

    const failure = this.checkSafety(choice);
    if (failure !== null) return failure;

    const verdict: FormatVerdict = {
      ok: true,
      detected: choice.inspector.name,
      virtualSize: toVirtualSize(choice.virtualSize, choice.warnings),
    };
    if (choice.warnings.length > 0) verdict.warning = choice.warnings.join('; ');
    return verdict;
  }

  /** Step 1: the one matching format, iso for hybrid iso+gpt, raw when nothing matched. */
  private detect(): Inspector | Failure {
    const matched = this.live().filter((i) => i.matches());
    const names = matched.map((i) => i.name);

    if (names.length === 2 && names.includes('iso') && names.includes('gpt')) {
      return matched.find((i) => i.name === 'iso') ?? this.raw;
    }
    if (matched.length > 1) {
      return {
        ok: false,
        reason: 'invalid',
        message: `Multiple formats detected: ${names.join(', ')}`,
      };
    }
    return matched[0] ?? this.raw;
  }

  /** Step 2: the declared disk_format against what the data is. */
  private compare(inspector: Inspector, declared: string): Choice | Failure {
    const detected = inspector.name;
    if (detected === declared) {
      return { inspector, virtualSize: inspector.virtualSize(this.total), warnings: [] };
    }
    if (detected === 'raw' && !INSPECTABLE.has(declared)) {
      return { inspector, virtualSize: null, warnings: [] };
    }
    if (declared === 'raw') {
      // Accepted as opaque bytes: the size is the byte count, but the checks still apply.
      const warning = `Image claims disk_format raw but its data is ${detected}`;
      return { inspector, virtualSize: BigInt(this.total), warnings: [warning] };
    }

    const message = `Image disk_format ${declared} does not match stream data ${detected}`;
    return { ok: false, reason: 'mismatch', message };
  }

  /** Step 3: the safety checks of the chosen format. */
  private checkSafety(choice: Choice): Failure | null {
    const inspector = choice.inspector;
    if (!inspector.complete()) {
      const name = inspector.name;
      const message = `Image format inspection failed: the ${name} headers are truncated`;
      return { ok: false, reason: 'invalid', message };
    }

    const failures = runChecks(inspector);
    if (failures.length === 0) return null;

    const summary = failures.map((f) => `${f.name} (${f.message})`).join(', ');
    const tolerated = failures.every((f) => this.gptNonfatal.includes(f.name));
    if (inspector.name === 'gpt' && tolerated) {
      choice.warnings.push(`GPT safety checks failed but are configured non-fatal: ${summary}`);
      return null;
    }
    return { ok: false, reason: 'unsafe', message: `Image failed safety checks: ${summary}` };
  }

  private live(): Inspector[] {
    return this.candidates.filter((i) => !this.dropped.has(i));
  }

  /** Whatever an inspector throws only means it cannot parse this data. */
  private guard(inspector: Inspector, step: () => void): void {
    try {
      step();
    } catch {
      this.dropped.add(inspector);
      inspector.wantsData = false;
    }
  }
}

function runChecks(inspector: Inspector): { name: string; message: string }[] {
  const failures: { name: string; message: string }[] = [];
  for (const check of inspector.safetyChecks()) {
    let message: string | null;
    try {
      message = check.run();
    } catch {
      message = 'the check could not read the headers';
    }
    if (message !== null) failures.push({ name: check.name, message });
  }
  return failures;
}

/** Zero means unknown; sizes beyond what a number holds exactly are reported as unknown. */
function toVirtualSize(size: bigint | null, warnings: string[]): number | null {
  if (size === null || size === 0n) return null;
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    warnings.push(`virtual size ${size} is too large to record`);
    return null;
  }
  return Number(size);
}
