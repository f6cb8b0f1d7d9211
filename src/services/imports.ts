/**
 * POST /v2/images/{id}/import: upstream's checks in upstream's order, the import lock's among
 * them, then a task in the shared queue under the image's import lock (see ImportLock), so
 * two imports of one image cannot both start. The work itself is ImportFlow's.
 */
import { randomUUID } from 'node:crypto';

import type { RequestContext } from '../domain/context.js';
import { ConflictError, InvalidInputError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import { isPlainObject } from '../domain/image-input.js';
import type { TaskRecord } from '../domain/task.js';
import type { ProjectQuotas } from '../quota/project-quotas.js';
import type { StoreRegistry } from '../stores/registry.js';
import type { RemoteImageRef } from '../import/remote-glance.js';
import type { ImageAccess } from './image-access.js';
import type { ImportLock } from './import-lock.js';

/** Key of the task input that records the caller's roles for the runner. */
export const CALLER_ROLES = 'caller_roles';

export interface ImportRequest {
  readonly method: { readonly name: string; readonly uri?: string } & Record<string, unknown>;
  readonly body: Record<string, unknown>;
  /** The X-Image-Meta-Store header, naming one target store. */
  readonly storeHeader: string | null;
}

export interface ImportSettings {
  readonly enabledMethods: readonly string[];
  /** Throws InvalidInputError when a web-download URI may not be fetched. */
  readonly validateUri: (uri: string) => Promise<void>;
  /**
   * glance-download: why the caller may not import the remote image (asked with the caller's
   * token), or null when it may. Absent when glance-download is not offered.
   */
  readonly remoteRefusal?: (ref: RemoteImageRef, callerToken: string) => Promise<string | null>;
}

/** Task input key: why a glance-download may not go ahead; the task fails with it. */
export const REMOTE_REFUSAL = 'remote_refusal';

export class ImportService {
  constructor(
    private readonly access: ImageAccess,
    private readonly lock: ImportLock,
    private readonly settings: ImportSettings,
    private readonly quotas: ProjectQuotas,
    private readonly stores: StoreRegistry,
  ) {}

  get methods(): readonly string[] {
    return this.settings.enabledMethods;
  }

  /** Checks the body's shape, as upstream's deserializer does before anything else. */
  parseBody(body: unknown, storeHeader: string | null): ImportRequest {
    if (!isPlainObject(body) || !isPlainObject(body.method)) {
      throw new InvalidInputError("Import request requires a 'method' field.");
    }
    const method = body.method;
    if (!('name' in method))
      throw new InvalidInputError("Import request requires a 'name' field.");
    if (typeof method.name !== 'string' || !this.methods.includes(method.name)) {
      throw new InvalidInputError(`Unknown import method name '${String(method.name)}'.`);
    }
    for (const flag of ['all_stores_must_succeed', 'all_stores']) {
      if (flag in body && typeof body[flag] !== 'boolean') {
        throw new InvalidInputError(`'${flag}' must be boolean value only`);
      }
    }
    return { method: method as ImportRequest['method'], body, storeHeader };
  }

  /** Queues the import; returns the task id, or null when there is nothing to do. */
  async start(
    context: RequestContext,
    imageId: string,
    request: ImportRequest,
  ): Promise<string | null> {
    // Before the lookup, as upstream: a project already over image_size_total cannot import.
    await this.quotas.enforceLimits(context.projectId, { image_size_total: 0 });
    const { image, target } = await this.access.find(context, imageId);
    const method = request.method.name;
    checkStatus(image, method);
    const remote = method === 'glance-download' ? remoteImageOf(request.method) : null;
    this.access.enforce(method === 'copy-image' ? 'copy_image' : 'modify_image', context, target);
    // Here, as upstream: a held lock answers 409 before the stores and the URI are looked at.
    const staleHolder = await this.lock.enforce(image);

    const stores = this.#targetStores(image, request);
    if (stores.length === 0) return null;
    if (request.body.all_stores_must_succeed === false && !this.stores.multiStore) {
      throw new InvalidInputError('All_stores_must_succeed can only be set with enabled_backends');
    }
    const uri = request.method.uri;
    if (method === 'web-download') {
      if (typeof uri !== 'string') {
        throw new InvalidInputError(`URI for web-download does not pass filtering: ${uri}`);
      }
      await this.settings.validateUri(uri);
    }

    const task = newImportTask(context, image, request, stores);
    if (remote) {
      // As upstream, a remote image the caller cannot have still gets a 202; its task fails.
      const refusal = await this.#remoteRefusal(context, remote);
      if (refusal !== null) task.input[REMOTE_REFUSAL] = refusal;
    }
    await this.lock.queue(image.id, task, staleHolder);
    return task.id;
  }

  async #remoteRefusal(context: RequestContext, ref: RemoteImageRef): Promise<string | null> {
    const check = this.settings.remoteRefusal;
    if (!check) throw new InvalidInputError("Unknown import method name 'glance-download'.");
    if (!context.authToken) return 'glance-download needs the caller to send a Keystone token';
    return check(ref, context.authToken);
  }

  /**
   * The stores an import writes to, as upstream picks them: all_stores, else `stores`, else
   * the header, else the default store. Outside multi-store: [null], the one store.
   */
  #targetStores(image: ImageRecord, request: ImportRequest): (string | null)[] {
    if (!this.stores.multiStore) return [null];
    const { body, storeHeader } = request;
    const allStores = body.all_stores === true;
    let stores = requestedStores(body, storeHeader, this.stores.defaultStore.id);
    if (allStores) stores = this.#writableStoreIds();
    for (const id of stores) {
      if (!this.stores.byId(id)) throw new ConflictError(`Unknown scheme '${id}' found in URI`);
    }
    if (request.method.name !== 'copy-image') return stores;

    const present = new Set(image.locations.map((location) => location.metadata.store));
    if (allStores) return stores.filter((id) => !present.has(id));
    const already = stores.find((id) => present.has(id));
    if (already !== undefined) {
      throw new InvalidInputError(`Image is already present at store '${already}'`);
    }
    return stores;
  }

  #writableStoreIds(): string[] {
    return this.stores
      .list()
      .filter((entry) => !entry.store.readOnly)
      .map((entry) => entry.spec.id);
  }
}

/** `stores` from the body, else the header, else the default; never both. */
function requestedStores(
  body: Record<string, unknown>,
  header: string | null,
  defaultId: string,
): string[] {
  if (body.all_stores === true) {
    if ('stores' in body || header !== null) {
      throw new InvalidInputError(
        "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
      );
    }
    return [];
  }
  if (!('stores' in body)) return [header ?? defaultId];
  if (header !== null) {
    throw new InvalidInputError(
      "Stores parameter and x-image-meta-store header can't be both specified",
    );
  }
  const stores = body.stores;
  if (!Array.isArray(stores) || !stores.every((id) => typeof id === 'string')) {
    throw new InvalidInputError("'stores' must be a list of store identifiers");
  }
  return stores;
}

/**
 * The remote image a glance-download names, with upstream's checks; the interface defaults to
 * public and is written back into the request, as upstream records it.
 */
function remoteImageOf(method: ImportRequest['method']): RemoteImageRef {
  for (const field of ['glance_region', 'glance_image_id']) {
    if (!(field in method)) {
      throw new InvalidInputError(`'${field}' needs to be set for glance-download import method`);
    }
  }
  const imageId = method.glance_image_id;
  if (typeof imageId !== 'string' || !UUID_LIKE.test(imageId)) {
    throw new InvalidInputError(`Remote image id does not look like a UUID: ${String(imageId)}`);
  }
  method.glance_service_interface ??= 'public';
  const { glance_region: region, glance_service_interface: face } = method;
  if (typeof region !== 'string' || typeof face !== 'string') {
    throw new InvalidInputError('glance_region and glance_service_interface must be strings');
  }
  return { region, imageId: imageId.toLowerCase(), interface: face };
}

/** What Python's uuid.UUID accepts: 32 hex digits, hyphens anywhere between groups. */
const UUID_LIKE =
  /^(urn:uuid:)?\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i;

function checkStatus(image: ImageRecord, method: string): void {
  if (image.status === 'active' && method !== 'copy-image') {
    throw new ConflictError('Image with status active cannot be target for import');
  }
  if (image.status !== 'active' && method === 'copy-image') {
    throw new ConflictError('Only images with status active can be targeted for copying');
  }
  if (image.status !== 'queued' && (method === 'web-download' || method === 'glance-download')) {
    throw new ConflictError(`Image needs to be in 'queued' state to use '${method}' method`);
  }
  if (image.status !== 'uploading' && method === 'glance-direct') {
    throw new ConflictError("Image needs to be staged before 'glance-direct' method can be used");
  }
  for (const field of ['container_format', 'disk_format'] as const) {
    if (!image[field]) throw new ConflictError(`'${field}' needs to be set before import`);
  }
}

function newImportTask(
  context: RequestContext,
  image: ImageRecord,
  request: ImportRequest,
  stores: (string | null)[],
): TaskRecord {
  const now = new Date().toISOString();
  return {
    id: randomUUID(),
    type: 'api_image_import',
    status: 'pending',
    owner: context.projectId,
    image_id: image.id,
    request_id: context.requestId,
    user_id: context.userId,
    input: {
      image_id: image.id,
      import_req: request.body,
      backend: stores,
      // The caller's roles decide what import plugins may do (metadata injection); kept for
      // the task runner only, never shown in task views.
      [CALLER_ROLES]: [...context.roles],
    },
    result: null,
    message: '',
    expires_at: null,
    created_at: now,
    updated_at: now,
  };
}
