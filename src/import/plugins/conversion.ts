/**
 * image_conversion: the staged image is converted to `[image_conversion] output_format` with
 * qemu-img. qemu-img parses whatever it is given, so nothing reaches it before our own format
 * inspector has confirmed the data is the declared disk_format and passed its safety checks;
 * qemu-img's own view must then agree, and the output is inspected again before it replaces
 * the staged file, so that an image hidden inside another cannot slip through conversion.
 */
import { createReadStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';

import { createFormatInspector, type DetectedFormat } from '../../pipeline/format/index.js';
import { capOf, tempPathBeside } from './files.js';
import { QemuImg, type QemuImageInfo } from './qemu-img.js';
import type {
  ImportPlugin,
  PluginContext,
  PluginOutcome,
  PluginSettings,
  StagedData,
} from './types.js';

/** qemu's driver for each format the inspector recognises (VHD is "vpc" to qemu). */
const QEMU_DRIVER: Readonly<Record<Exclude<DetectedFormat, 'gpt' | 'iso'>, string>> = {
  raw: 'raw',
  qcow2: 'qcow2',
  qed: 'qed',
  vhd: 'vpc',
  vhdx: 'vhdx',
  vmdk: 'vmdk',
  vdi: 'vdi',
  luks: 'luks',
};

const OUTPUTS: readonly string[] = ['raw', 'qcow2', 'vmdk'];
const READ_CHUNK = 1024 * 1024;

type Output = PluginSettings['conversionOutputFormat'];

export class ConversionPlugin implements ImportPlugin {
  readonly name = 'image_conversion';
  readonly #qemuImg: QemuImg;

  constructor(private readonly settings: PluginSettings) {
    if (!OUTPUTS.includes(settings.conversionOutputFormat)) {
      const output = String(settings.conversionOutputFormat);
      throw new Error(
        `[image_conversion] output_format must be raw, qcow2 or vmdk, not ${output}`,
      );
    }
    this.#qemuImg = new QemuImg(settings.qemuImgPath);
  }

  async run(staged: StagedData, context: PluginContext): Promise<PluginOutcome> {
    const declared = staged.diskFormat;
    if (declared === null) throw new Error('The image has no disk_format to convert from');

    const detected = await this.#inspect(staged.path, declared);
    if (detected === 'iso') {
      // An ISO is kept as it is, and only when that is what the image claims to be.
      if (declared === 'iso') return {};
      throw new Error(`Image disk_format ${declared} does not match its data, an ISO image`);
    }
    if (detected !== declared) {
      throw new Error(`Image disk_format ${declared} does not match stream data ${detected}`);
    }

    const driver = QEMU_DRIVER[detected];
    const info = await this.#qemuImg.info(staged.path, driver);
    this.#check(info, driver);
    const virtualSize = info.virtualSize;

    const output = this.settings.conversionOutputFormat;
    if (detected === output) return { virtualSize };
    const size = await this.#convert(staged.path, driver, output, virtualSize, context);
    return { diskFormat: output, containerFormat: 'bare', size, virtualSize };
  }

  /** The format of the file by our inspector, GPT counted as raw; throws when it is unsafe. */
  async #inspect(path: string, declared: string): Promise<Exclude<DetectedFormat, 'gpt'>> {
    const inspector = createFormatInspector({
      gptSafetyChecksNonfatal: this.settings.gptSafetyChecksNonfatal ?? [],
    });
    for await (const chunk of createReadStream(path, { highWaterMark: READ_CHUNK })) {
      inspector.push(chunk as Buffer);
    }
    const verdict = inspector.finish(declared);
    if (!verdict.ok) throw new Error(verdict.message);
    // Disks with a partition table are raw disks as far as qemu and glance are concerned.
    return verdict.detected === 'gpt' ? 'raw' : verdict.detected;
  }

  /** qemu-img must see the same format and no reference to any other file. */
  #check(info: QemuImageInfo, driver: string): void {
    if (info.format !== driver) {
      const seen = info.format ?? 'unknown';
      throw new Error(`qemu-img reports the image format as ${seen}, not ${driver}`);
    }
    if (info.backingFile !== null) throw new Error('Images with a backing file are not allowed');
    if (info.dataFile !== null)
      throw new Error('Images with an external data file are not allowed');
    if (driver !== 'vmdk') return;

    const allowed = this.settings.vmdkAllowedTypes;
    if (info.vmdkCreateType === null) throw new Error('The VMDK create-type cannot be determined');
    if (!allowed.includes(info.vmdkCreateType)) {
      const list = allowed.length > 0 ? allowed.join(', ') : 'none';
      throw new Error(`VMDK create-type ${info.vmdkCreateType} is not allowed (allowed: ${list})`);
    }
  }

  /** Converts beside the staged file, checks the result, and puts it in its place. */
  async #convert(
    path: string,
    driver: string,
    output: Output,
    virtualSize: number | null,
    context: PluginContext,
  ): Promise<number> {
    const cap = capOf(context.sizeCap);
    // A raw output is as large as the virtual disk: refuse before filling the staging area.
    if (output === 'raw' && virtualSize !== null && virtualSize > cap) {
      throw new Error(capMessage(virtualSize, cap));
    }

    const temp = tempPathBeside(path, 'convert');
    try {
      await this.#qemuImg.convert(path, driver, temp, output);
      const converted = await this.#inspect(temp, output);
      if (converted !== output) {
        throw new Error(`The image converted to ${output} was detected as ${converted}`);
      }
      const { size } = await stat(temp);
      if (size > cap) throw new Error(capMessage(size, cap));
      await rename(temp, path);
      return size;
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }
}

function capMessage(size: number, cap: number): string {
  return `The converted image would be ${size} bytes, more than the size cap of ${cap} bytes`;
}
