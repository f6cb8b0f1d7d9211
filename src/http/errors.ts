/**
 * The one place that turns errors into HTTP responses.
 *
 * Bodies imitate WebOb, which upstream Glance uses: the format is negotiated from Accept
 * between HTML and JSON, falling back to plain text. python-glanceclient accepts any media type
 * and strips the HTML it gets back; openstacksdk reads `message` from the flat JSON form.
 */
import type { GlimpseError } from '../domain/errors.js';
import {
  ConflictError,
  ForbiddenError,
  GoneError,
  InvalidInputError,
  NotFoundError,
  QuotaExceededError,
  RangeNotSatisfiableError,
  UnauthorizedError,
  UnavailableError,
  UnsupportedMediaTypeError,
} from '../domain/errors.js';

export const STATUS_TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  410: 'Gone',
  411: 'Length Required',
  413: 'Request Entity Too Large',
  415: 'Unsupported Media Type',
  416: 'Requested Range Not Satisfiable',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

/** WebOb's default explanations, used when an error carries no message of its own. */
export const DEFAULT_EXPLANATIONS: Readonly<Record<number, string>> = {
  400: 'The server could not comply with the request since it is either malformed or otherwise incorrect.',
  404: 'The resource could not be found.',
  405: 'The method is not allowed for this resource.',
  500: 'The server has either erred or is incapable of performing the requested operation.',
  501: 'The server has not implemented the requested method.',
};

const STATUS_BY_CLASS: ReadonlyArray<[new (...args: never[]) => GlimpseError, number]> = [
  [InvalidInputError, 400],
  [UnauthorizedError, 401],
  [ForbiddenError, 403],
  [NotFoundError, 404],
  [ConflictError, 409],
  [GoneError, 410],
  [QuotaExceededError, 413],
  [UnsupportedMediaTypeError, 415],
  [RangeNotSatisfiableError, 416],
  [UnavailableError, 503],
];

export function statusOf(error: GlimpseError): number {
  for (const [kind, status] of STATUS_BY_CLASS) if (error instanceof kind) return status;
  return 500;
}

export interface ErrorBody {
  readonly contentType: string;
  readonly body: string;
}

type BodyFormat = 'html' | 'json' | 'plain';

/** Quality WebOb would give `offer` under this Accept header (most specific range wins). */
function qualityOf(offer: string, ranges: Array<{ type: string; q: number }>): number {
  const [major] = offer.split('/');
  let best: { specificity: number; q: number } = { specificity: -1, q: 0 };
  for (const range of ranges) {
    const specificity =
      range.type === offer ? 2 : range.type === `${major}/*` ? 1 : range.type === '*/*' ? 0 : -1;
    if (specificity > best.specificity) best = { specificity, q: range.q };
  }
  return best.q;
}

export function negotiateFormat(accept: string | undefined): BodyFormat {
  if (!accept) return 'plain';

  const ranges = accept.split(',').map((part) => {
    const [type = '', ...params] = part.split(';').map((piece) => piece.trim().toLowerCase());
    const qParam = params.find((param) => param.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    return { type, q: Number.isFinite(q) ? q : 0 };
  });
  const html = qualityOf('text/html', ranges);
  const json = qualityOf('application/json', ranges);
  if (html <= 0 && json <= 0) return 'plain';
  return json > html ? 'json' : 'html';
}

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#x27;');
}

export function renderError(
  status: number,
  explanation: string,
  detail: string,
  accept: string | undefined,
): ErrorBody {
  const title = STATUS_TITLES[status] ?? 'Error';
  const statusLine = `${status} ${title}`;

  switch (negotiateFormat(accept)) {
    case 'plain':
      return {
        contentType: 'text/plain; charset=UTF-8',
        body: `${statusLine}\n\n${explanation}\n\n ${detail}  `,
      };
    case 'json': {
      const message = `${explanation}<br /><br />\n${detail}\n\n`;
      return {
        contentType: 'application/json',
        body: JSON.stringify({ message, code: statusLine, title }),
      };
    }
    case 'html': {
      const body = `${escapeHtml(explanation)}<br /><br />\n${escapeHtml(detail)}\n\n`;
      return {
        contentType: 'text/html; charset=UTF-8',
        body:
          `<html>\n <head>\n  <title>${statusLine}</title>\n </head>\n <body>\n` +
          `  <h1>${statusLine}</h1>\n  ${body}\n </body>\n</html>`,
      };
    }
  }
}
