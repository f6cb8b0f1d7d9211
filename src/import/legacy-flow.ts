/**
 * What a legacy `import` task does (POST /v2/tasks): fills the image made with the task from
 * `import_from`, exactly as a web-download import would (URI filter, size cap, hashes,
 * format checks, one copy in the default store). As upstream, an import that fails deletes
 * its image: it was made for this task and holds nothing else.
 */
import type { Logger } from 'pino';

import type { TaskRecord } from '../domain/task.js';
import type { ImageRepository } from '../db/repository.js';
import type { ImageDataService } from '../services/image-data.js';
import { CALLER_ROLES } from '../services/imports.js';
import type { TaskHandler } from './runner.js';

export class LegacyImportFlow implements TaskHandler {
  constructor(
    private readonly webDownload: TaskHandler,
    private readonly images: ImageRepository,
    private readonly data: ImageDataService,
    private readonly logger: Logger,
  ) {}

  async run(task: TaskRecord): Promise<Record<string, unknown>> {
    try {
      return await this.webDownload.run(asWebDownload(task));
    } catch (error) {
      await this.#deleteImage(task);
      throw error;
    }
  }

  async abandon(task: TaskRecord, reason: string): Promise<void> {
    await this.webDownload.abandon(asWebDownload(task), reason);
    await this.#deleteImage(task);
  }

  async #deleteImage(task: TaskRecord): Promise<void> {
    if (!task.image_id) return;
    try {
      const image = await this.images.get(task.image_id);
      if (!image) return;
      await this.images.delete(image.id, 'deleted');
      await this.data.removeData(image);
    } catch (error) {
      this.logger.error(
        { err: error, image_id: task.image_id, task_id: task.id },
        'could not delete the image of a failed import task; delete it by hand',
      );
    }
  }
}

/** The legacy task as the web-download import it amounts to. */
function asWebDownload(task: TaskRecord): TaskRecord {
  const uri = task.input.import_from;
  return {
    ...task,
    type: 'api_image_import',
    input: {
      image_id: task.image_id,
      import_req: { method: { name: 'web-download', uri } },
      backend: [null],
      [CALLER_ROLES]: task.input[CALLER_ROLES],
    },
  };
}
