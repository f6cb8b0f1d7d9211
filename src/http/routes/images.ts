import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { UnsupportedMediaTypeError } from '../../domain/errors.js';
import { ImageSchemaValidator, parseCreateBody } from '../../domain/image-input.js';
import { PATCH_MEDIA_TYPES, parsePatchBody } from '../../domain/image-patch.js';
import { buildListLink, parseImageListQuery } from '../../domain/list-query.js';
import type { ImageRecord } from '../../domain/image.js';
import type { StoreRegistry } from '../../stores/registry.js';
import type { HttpDependencies } from '../server.js';
import { imageViewWithLocations, type LocationDisclosure } from '../image-view.js';
import { parseJsonBody } from '../json-body.js';
import { refuseBody, resource } from '../resource.js';

type IdParams = { Params: { id: string } };

const ACCEPT_PATCH = Object.keys(PATCH_MEDIA_TYPES).sort().join(', ');

/** POST/GET /v2/images, GET/PATCH/DELETE /v2/images/{id} and the (de)activate actions. */
export function imageRoutes({ config, images, imports, stores }: HttpDependencies) {
  const disclosure: LocationDisclosure = {
    showLocations: config.show_multiple_locations,
    showDirectUrl: config.show_image_direct_url,
    stores,
  };
  const view = (request: FastifyRequest, image: ImageRecord) =>
    imageViewWithLocations(image, request.glimpse.isAdmin, disclosure);

  const validator = new ImageSchemaValidator({
    diskFormats: config.disk_formats,
    containerFormats: config.container_formats,
  });
  const listOptions = {
    limitDefault: config.limit_param_default,
    limitMax: config.api_limit_max,
    diskFormats: [...config.disk_formats],
    containerFormats: [...config.container_formats],
  };

  const create = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseCreateBody(parseJsonBody(request.body), validator);
    const image = await images.create(request.glimpse, body);
    const base = config.public_endpoint || `${request.protocol}://${request.host}`;
    // openstacksdk reads this header to learn whether it may import into the new image.
    if (imports.methods.length > 0) {
      reply.header('openstack-image-import-methods', imports.methods.join(','));
    }
    if (stores.multiStore) reply.header('openstack-image-store-ids', storeIds(stores));
    return reply
      .code(201)
      .header('location', `${base.replace(/\/+$/, '')}/v2/images/${image.id}`)
      .send(view(request, image));
  };

  const list = async (request: FastifyRequest) => {
    refuseBody(request);
    const pairs = queryPairs(request.url);
    const query = parseImageListQuery(pairs, listOptions);
    const page = await images.list(request.glimpse, query);

    const body: Record<string, unknown> = {
      images: page.images.map((image) => view(request, image)),
      first: buildListLink('/v2/images', pairs, null),
      schema: '/v2/schemas/images',
    };
    if (page.nextMarker !== null) {
      body.next = buildListLink('/v2/images', pairs, page.nextMarker);
    }
    return body;
  };

  const show = async (request: FastifyRequest<IdParams>) => {
    refuseBody(request);
    return view(request, await images.show(request.glimpse, request.params.id));
  };

  const update = async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    const draft = PATCH_MEDIA_TYPES[mediaType(request.headers['content-type'])];
    if (draft === undefined) {
      reply.header('accept-patch', ACCEPT_PATCH);
      throw patchMediaTypeError(request.headers['content-type']);
    }

    const changes = parsePatchBody(parseJsonBody(request.body), draft, validator);
    return view(request, await images.update(request.glimpse, request.params.id, changes));
  };

  const remove = async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
    refuseBody(request);
    await images.delete(request.glimpse, request.params.id);
    return reply.code(204).send();
  };

  const action =
    (name: 'deactivate' | 'reactivate') =>
    async (request: FastifyRequest<IdParams>, reply: FastifyReply) => {
      refuseBody(request);
      await images[name](request.glimpse, request.params.id);
      return reply.code(204).send();
    };

  return async (app: FastifyInstance): Promise<void> => {
    resource(app, '/v2/images', { POST: create, GET: list });
    resource(app, '/v2/images/:id', { GET: show, PATCH: update, DELETE: remove });
    resource(app, '/v2/images/:id/actions/deactivate', { POST: action('deactivate') });
    resource(app, '/v2/images/:id/actions/reactivate', { POST: action('reactivate') });
  };
}

function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function patchMediaTypeError(contentType: string | undefined): UnsupportedMediaTypeError {
  return new UnsupportedMediaTypeError(
    `The request media type ${contentType ?? ''} is not supported by this server.`,
    { detail: `Image PATCH expects Content-Type one of: ${ACCEPT_PATCH}` },
  );
}

/** Every key=value pair of the query string, in order, repeated keys kept. */
export function queryPairs(url: string): Array<[string, string]> {
  const start = url.indexOf('?');
  if (start === -1) return [];
  return [...new URLSearchParams(url.slice(start + 1)).entries()];
}

/** Every configured store, as upstream lists them in the create response's header. */
function storeIds(stores: StoreRegistry): string {
  return stores
    .list()
    .map((entry) => entry.spec.id)
    .join(',');
}
