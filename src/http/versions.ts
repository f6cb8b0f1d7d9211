/**
 * The versions document and upstream's version negotiation, done by rewriting the URL before
 * routing: `/v2.3/images` and `Accept: application/vnd.openstack.images-v2` both reach the
 * `/v2/...` routes, `/versions` gets the document with 200, and anything else gets it with 300.
 */
import type { IncomingMessage } from 'node:http';

export interface ApiVersion {
  readonly id: string;
  readonly status: 'CURRENT' | 'SUPPORTED';
}

const BASE_VERSIONS = ['2.7', '2.6', '2.5', '2.4', '2.3', '2.2', '2.1', '2.0'];
const MULTI_STORE_VERSIONS = ['2.13', '2.12', '2.11', '2.10', '2.9', '2.8'];

/**
 * The versions listed, in upstream's order for a deployment without an image cache. Clients
 * look versions up by id (python-glanceclient checks for 2.12 before image tasks and for 2.17
 * before the locations API), so each id stands for features this server has: 2.8-2.13 need
 * several stores (multi-store, delete from store, copy-image); 2.17 is the locations API.
 */
export function apiVersions(multiStore: boolean): ApiVersion[] {
  const supported = (id: string): ApiVersion => ({ id, status: 'SUPPORTED' });
  return [
    supported('2.15'),
    ...(multiStore ? MULTI_STORE_VERSIONS : ['2.9']).map(supported),
    { id: '2.17', status: 'CURRENT' },
    ...BASE_VERSIONS.map(supported),
  ];
}

const MEDIA_TYPE_PREFIX = 'application/vnd.openstack.images-';

export const VERSIONS_PATH = '/versions';
export const MULTIPLE_CHOICES_PATH = '/.multiple-choices';
const UNVERSIONED_PATHS = new Set(['/healthcheck']);

export function versionsDocument(baseUrl: string, versions: readonly ApiVersion[]) {
  const links = [{ rel: 'self', href: `${baseUrl}/v2/` }];
  return { versions: versions.map(({ id, status }) => ({ id: `v${id}`, status, links })) };
}

/** The URL rewriter for Fastify: maps every accepted version prefix to `/v2`. */
export function urlNegotiator(versions: readonly ApiVersion[]) {
  const accepted = new Set(['v2', ...versions.map(({ id }) => `v${id}`)]);
  return (request: IncomingMessage) => negotiateUrl(request, accepted);
}

function negotiateUrl(request: IncomingMessage, accepted: ReadonlySet<string>): string {
  const url = request.url ?? '/';
  const queryStart = url.indexOf('?');
  const path = queryStart === -1 ? url : url.slice(0, queryStart);
  const query = queryStart === -1 ? '' : url.slice(queryStart);
  const [first = '', ...rest] = path.split('/').slice(1);

  if (first === 'versions') return VERSIONS_PATH;
  if (UNVERSIONED_PATHS.has(path)) return url;

  const accept = request.headers.accept ?? '';
  if (accept.startsWith(MEDIA_TYPE_PREFIX)) {
    const version = accept.slice(MEDIA_TYPE_PREFIX.length).split(/[;,\s]/)[0] ?? '';
    return accepted.has(version) ? `/v2${path}${query}` : MULTIPLE_CHOICES_PATH;
  }
  if (accepted.has(first)) return `/v2/${rest.join('/')}${query}`;
  return MULTIPLE_CHOICES_PATH;
}
