/**
 * Another region's image service, the source of the glance-download import method. Its
 * endpoint comes from the Keystone catalog (service type `image`, the asked region and
 * interface); its URLs pass the same filter as web-download sources, as upstream checks them.
 *
 * Whose token is used:
 * - while the import request lasts, the caller's, to check that the caller may see the
 *   remote image (access()): an import must not copy what its caller could not read;
 * - in the task, which may run later and in another process, this service's own token: the
 *   caller's token is never stored.
 */
import { InvalidInputError } from '../domain/errors.js';
import type { KeystoneClient } from '../auth/keystone-client.js';
import {
  openWebSource,
  WebSourceHttpError,
  type WebSource,
  type WebSourceOptions,
} from './web-source.js';

/** Where a glance-download import takes its image from (the method's fields). */
export interface RemoteImageRef {
  readonly region: string;
  readonly imageId: string;
  /** Catalog interface: public, internal or admin. */
  readonly interface: string;
}

/** The remote image as its image service shows it (GET /v2/images/{id}). */
export type RemoteImageView = Readonly<Record<string, unknown>>;

/** Remote image metadata is small; anything larger is not an image service's answer. */
const MAX_METADATA_BYTES = 1024 * 1024;

interface CatalogBody {
  catalog?: Array<{
    type?: string;
    endpoints?: Array<{ interface?: string; region_id?: string; region?: string; url?: string }>;
  }>;
}

export class RemoteGlance {
  constructor(
    private readonly keystone: KeystoneClient,
    private readonly webSource: WebSourceOptions,
  ) {}

  /**
   * Why the caller may not import the remote image (it cannot see it, or it is not found),
   * or null when it can. Asked with the caller's token while its request lasts.
   */
  async refusal(ref: RemoteImageRef, callerToken: string): Promise<string | null> {
    try {
      await this.#metadata(ref, callerToken);
      return null;
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  }

  /** The remote image's metadata, read with this service's token. */
  async image(ref: RemoteImageRef): Promise<RemoteImageView> {
    return this.#metadata(ref, await this.keystone.serviceToken());
  }

  /** Opens the remote image's data, read with this service's token. */
  async openData(ref: RemoteImageRef): Promise<WebSource> {
    const url = `${await this.#endpoint(ref)}/v2/images/${ref.imageId}/file`;
    const token = await this.keystone.serviceToken();
    return openWebSource(url, this.webSource, { 'x-auth-token': token }).catch((error) => {
      throw describe(error, ref);
    });
  }

  async #metadata(ref: RemoteImageRef, token: string): Promise<RemoteImageView> {
    const url = `${await this.#endpoint(ref)}/v2/images/${ref.imageId}`;
    const source = await openWebSource(url, this.webSource, {
      'x-auth-token': token,
      accept: 'application/json',
    }).catch((error: unknown) => {
      throw describe(error, ref);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of source.body) {
      size += chunk.length;
      if (size > MAX_METADATA_BYTES) throw new Error(`${where(ref)} sent too much metadata`);
      chunks.push(chunk);
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8')) as RemoteImageView;
    } catch {
      throw new Error(`${where(ref)} did not answer with an image`);
    }
  }

  /** The image service endpoint of the region, from this service's Keystone catalog. */
  async #endpoint(ref: RemoteImageRef): Promise<string> {
    const response = await this.keystone.get('/auth/catalog');
    if (response.status !== 200) {
      throw new Error(`Keystone answered ${response.status} when asked for its catalog`);
    }
    const body = (await response.json()) as CatalogBody;
    const found = (body.catalog ?? [])
      .filter((service) => service.type === 'image')
      .flatMap((service) => service.endpoints ?? [])
      .find(
        (endpoint) =>
          endpoint.interface === ref.interface &&
          (endpoint.region_id === ref.region || endpoint.region === ref.region),
      );
    if (!found?.url) {
      throw new InvalidInputError(
        `No ${ref.interface} image service endpoint in region ${ref.region} in the catalog`,
      );
    }
    return found.url.replace(/\/+$/, '').replace(/\/v2$/, '');
  }
}

function where(ref: RemoteImageRef): string {
  return `The image service of region ${ref.region}`;
}

function describe(error: unknown, ref: RemoteImageRef): Error {
  if (error instanceof WebSourceHttpError) {
    const missing = error.status === 404 || error.status === 403;
    return new Error(
      missing
        ? `Image ${ref.imageId} was not found in region ${ref.region}`
        : `${where(ref)} answered HTTP ${error.status} for image ${ref.imageId}`,
    );
  }
  return error instanceof Error ? error : new Error(String(error));
}
