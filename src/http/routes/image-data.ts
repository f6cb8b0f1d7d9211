/**
 * PUT /v2/images/{id}/file, GET /v2/images/{id}/file and PUT /v2/images/{id}/stage.
 *
 * Request bodies are not parsed or buffered: the handler reads the raw request stream, so an
 * upload flows through the pipeline into the store with a fixed amount of memory.
 */
import { pipeline } from 'node:stream/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { InvalidInputError, UnsupportedMediaTypeError } from '../../domain/errors.js';
import { verifyingStream } from '../../pipeline/verify.js';
import type { ImageDataService } from '../../services/image-data.js';
import { requestedRange } from '../range.js';
import { storeHeaderOf } from '../store-header.js';
import { refuseBody, resource } from '../resource.js';

type IdParams = { Params: { id: string }; Querystring: Record<string, unknown> };

export interface ImageDataRouteOptions {
  readonly data: ImageDataService;
  /** Check downloads against their recorded checksums while streaming. */
  readonly verifyDownloads: boolean;
}

export function imageDataRoutes({ data, verifyDownloads }: ImageDataRouteOptions) {
  const receive =
    (operation: 'upload' | 'stage') =>
    async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
      checkOctetStream(request.headers['content-type']);
      const declaredSize = declaredSizeOf(request);
      try {
        await data[operation](request.glimpse, request.params.id, {
          // Stopping early must not destroy the request: its error still has to be sent.
          body: request.raw.iterator({ destroyOnReturn: false }),
          declaredSize,
          storeId: storeHeaderOf(request),
        });
      } catch (error) {
        // The client may still be sending: read a little more so that the error reaches it
        // (closing with unread bytes makes the kernel reset the connection), then close.
        if (!request.raw.complete) {
          reply.header('connection', 'close');
          await discardBriefly(request.raw);
        }
        throw error;
      }
      return reply.code(204).send();
    };

  const download = async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    refuseBody(request);
    const prefer = preferredStores(request.query.prefer);
    const { image, open } = await data.download(request.glimpse, request.params.id, prefer);
    if (!open) return reply.code(204).send();

    const size = image.size ?? 0;
    const range = requestedRange(request.headers, size);
    const stream = await open(range ?? undefined);

    reply.header('content-type', 'application/octet-stream');
    if (image.checksum) reply.header('content-md5', image.checksum);
    if (range) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
      reply.header('content-length', range.end - range.start + 1);
      return reply.send(stream);
    }
    reply.header('content-length', size);
    if (!verifyDownloads || !image.checksum) return reply.send(stream);

    const checked = verifyingStream({
      md5: image.checksum,
      algo: image.os_hash_algo,
      value: image.os_hash_value,
      crc32: image.data_crc32,
    });
    pipeline(stream, checked).catch((error: unknown) => {
      request.log.error(
        { err: error, image_id: image.id },
        'image data failed its checksum on download; the response was aborted. ' +
          'Restore the image from a good copy or delete it.',
      );
    });
    return reply.send(checked);
  };

  return async (app: FastifyInstance): Promise<void> => {
    // Leave bodies unread for the handlers to stream.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', (_request, _payload, done) => done(null));

    resource(app, '/v2/images/:id/file', { PUT: receive('upload'), GET: download });
    resource(app, '/v2/images/:id/stage', { PUT: receive('stage') });
  };
}

/** Bounds on reading what a refused upload still sends. */
const DISCARD_MS = 2000;
const DISCARD_BYTES = 64 * 1024 * 1024;

async function discardBriefly(body: NodeJS.ReadableStream & { destroyed?: boolean }) {
  if (body.destroyed) return;
  await new Promise<void>((resolve) => {
    let seen = 0;
    const done = () => {
      clearTimeout(timer);
      body.removeListener('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > DISCARD_BYTES) done();
    };
    const timer = setTimeout(done, DISCARD_MS);
    body.on('data', onData);
    body.once('end', done);
    body.once('error', done);
    body.once('close', done);
    body.resume();
  });
}

function checkOctetStream(contentType: string | undefined): void {
  const media = (contentType ?? '').split(';')[0]?.trim().toLowerCase();
  if (media !== 'application/octet-stream') {
    throw new UnsupportedMediaTypeError(
      `The request media type ${contentType ?? 'None'} is not supported by this server.`,
    );
  }
}

/** `?prefer=a,b`: store ids to read first, blanks dropped (a repeated parameter: the last). */
function preferredStores(param: unknown): string[] {
  const text = Array.isArray(param) ? param[param.length - 1] : param;
  if (typeof text !== 'string') return [];
  return text
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id !== '');
}

/** x-openstack-image-size wins over Content-Length; both absent means unknown. */
function declaredSizeOf(request: FastifyRequest): number | null {
  const header = request.headers['x-openstack-image-size'];
  if (header !== undefined) {
    const text = Array.isArray(header) ? (header[0] ?? '') : header;
    if (!/^\d{1,19}$/.test(text.trim())) {
      throw new InvalidInputError('Invalid or missing image size in request headers.');
    }
    return Number(text.trim());
  }
  const length = request.headers['content-length'];
  return length === undefined ? null : Number(length);
}
