/**
 * The URI filter of the `web-download` import method (`[import_filtering_opts]`).
 *
 * The filter decides whether the server may fetch a URI that a client handed it, so it is the
 * guard against server-side request forgery. Beyond the scheme, host and port lists that upstream
 * Glance has, it refuses addresses that only make sense inside the deployment (loopback, private,
 * link-local, metadata services), and it checks the addresses a host name resolves to, not only
 * the name: an attacker controls the DNS answers of his own names.
 *
 * The URI is read twice, once by a strict parser here and once by the WHATWG parser that undici
 * uses to connect, and both readings must name the same host. Anything on which URL parsers are
 * known to disagree (backslashes, white space, control characters, percent-encoded or numeric
 * shorthand hosts) is refused rather than interpreted.
 *
 * Credentials in the URI (`http://user:pass@host/`) are allowed, as upstream does; error
 * messages replace them with `***` because those messages end up in logs and task records.
 */
import { lookup as systemLookup } from 'node:dns/promises';
import { domainToASCII } from 'node:url';

import { InvalidInputError } from '../domain/errors.js';

export interface ResolvedAddress {
  address: string;
  family: number;
}

/** Resolves a host name; the same contract as `dns.promises.lookup(host, { all: true })`. */
export type HostLookup = (host: string) => Promise<ResolvedAddress[]>;

export interface UriFilterOptions {
  /** Default `['http', 'https']`. */
  allowedSchemes: string[];
  /** Used only when `allowedSchemes` is empty. */
  disallowedSchemes: string[];
  /** Names or IP literals; when non-empty, `disallowedHosts` is ignored. */
  allowedHosts: string[];
  disallowedHosts: string[];
  /** Default `[80, 443]`; checked only when the URL names a port. */
  allowedPorts: number[];
  disallowedPorts: number[];
  /**
   * Refuse addresses in loopback, private (RFC 1918, fc00::/7), link-local (169.254/16,
   * fe80::/10), CGNAT 100.64/10, unspecified, multicast, and cloud metadata (169.254.169.254,
   * fd00:ec2::254) ranges, even when a host NAME resolves to them — unless the host or address
   * is explicitly in allowedHosts. Default true.
   */
  refusePrivateAddresses: boolean;
  /** Name resolution; the system resolver when absent (tests inject their own). */
  lookup?: HostLookup;
}

/** A URI that passed the filter, with the addresses a connection to it may use. */
export interface ValidatedImportUri {
  /** The WHATWG reading of the URI, credentials included. */
  url: URL;
  /** For an IP literal, the literal itself; for a name, the accepted answers of the lookup. */
  addresses: ResolvedAddress[];
}

export function defaultUriFilterOptions(): UriFilterOptions {
  return {
    allowedSchemes: ['http', 'https'],
    disallowedSchemes: [],
    allowedHosts: [],
    disallowedHosts: [],
    allowedPorts: [80, 443],
    disallowedPorts: [],
    refusePrivateAddresses: true,
  };
}

/**
 * Throws InvalidInputError(`URI for web-download does not pass filtering: ${uri}`) — synchronous
 * checks plus DNS resolution (node:dns/promises lookup with all:true) of host names.
 */
export async function validateImportUri(uri: string, options: UriFilterOptions): Promise<void> {
  await resolveImportUri(uri, options);
}

/** Like `validateImportUri`, and returns what the connection must use. */
export async function resolveImportUri(
  uri: string,
  options: UriFilterOptions,
): Promise<ValidatedImportUri> {
  const refusal = (): InvalidInputError =>
    new InvalidInputError(`URI for web-download does not pass filtering: ${redactUri(uri)}`);

  const parsed = parseUri(uri);
  if (!parsed || !schemeAllowed(parsed.scheme, options) || !portAllowed(parsed.port, options)) {
    throw refusal();
  }
  const host = readHost(parsed);
  if (!host) throw refusal();

  const lists = hostLists(options);
  if (host.kind === 'name' && lists.allowed === null && lists.denied.has(host.name)) {
    throw refusal();
  }
  const candidates = host.kind === 'ip' ? [host.ip] : await resolveName(host.name, options);
  const nameKey = host.kind === 'name' ? host.name : null;
  const accepted = candidates.filter((ip) => addressAccepted(nameKey, ip, lists, options));
  if (accepted.length === 0) throw refusal();
  return { url: parsed.url, addresses: accepted.map((ip) => ip.connect) };
}

/** Hides the userinfo of a URI (`http://***@host/`) so that it can be shown or logged. */
export function redactUri(uri: string): string {
  return uri.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, '$1***@');
}

// ---------------------------------------------------------------------------------------------
// Parsing

interface ParsedUri {
  url: URL;
  scheme: string;
  /** The host exactly as written, without brackets. */
  rawHost: string;
  bracketed: boolean;
  /** The port as written; null when the URI names none (an empty port counts as none). */
  port: number | null;
}

const URI_HEAD = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)/i;

/** Schemes whose hosts the WHATWG parser normalizes (and that undici could fetch). */
const SPECIAL_SCHEMES = new Set(['http', 'https', 'ftp', 'ws', 'wss']);

function parseUri(uri: string): ParsedUri | null {
  if (hasAmbiguousCharacters(uri)) return null;
  const head = URI_HEAD.exec(uri);
  const scheme = head?.[1];
  const authority = head?.[2];
  if (scheme === undefined || authority === undefined) return null;
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return null;
  }
  const hostPort = splitHostPort(authority.slice(authority.lastIndexOf('@') + 1));
  return hostPort && { url, scheme: scheme.toLowerCase(), ...hostPort };
}

/**
 * Characters that parsers treat differently: WHATWG drops tabs and newlines and reads `\` as `/`
 * in http URLs, other parsers keep them in the authority.
 */
function hasAmbiguousCharacters(uri: string): boolean {
  for (let i = 0; i < uri.length; i += 1) {
    const code = uri.charCodeAt(i);
    if (code <= 0x20 || code === 0x7f || code === 0x5c) return true;
  }
  return false;
}

function splitHostPort(
  hostPort: string,
): Pick<ParsedUri, 'rawHost' | 'bracketed' | 'port'> | null {
  let rawHost: string;
  let rest: string;
  const bracketed = hostPort.startsWith('[');
  if (bracketed) {
    const close = hostPort.indexOf(']');
    if (close < 0) return null;
    rawHost = hostPort.slice(1, close);
    rest = hostPort.slice(close + 1);
  } else {
    const colon = hostPort.indexOf(':');
    rawHost = colon < 0 ? hostPort : hostPort.slice(0, colon);
    rest = colon < 0 ? '' : hostPort.slice(colon);
  }
  if (rest !== '' && !/^:\d*$/.test(rest)) return null;
  const port = rest.length > 1 ? Number(rest.slice(1)) : null;
  if (port !== null && port > 65535) return null;
  return { rawHost, bracketed, port };
}

// ---------------------------------------------------------------------------------------------
// Scheme and port lists: an allow-list, when set, makes the deny-list irrelevant.

function schemeAllowed(scheme: string, options: UriFilterOptions): boolean {
  if (options.allowedSchemes.length > 0) {
    return options.allowedSchemes.some((s) => s.toLowerCase() === scheme);
  }
  return !options.disallowedSchemes.some((s) => s.toLowerCase() === scheme);
}

/** A URI without a port uses its scheme's default, which upstream does not check. */
function portAllowed(port: number | null, options: UriFilterOptions): boolean {
  if (port === null) return true;
  if (options.allowedPorts.length > 0) return options.allowedPorts.includes(port);
  return !options.disallowedPorts.includes(port);
}

// ---------------------------------------------------------------------------------------------
// Hosts

interface IpAddress {
  /** Compared with the host lists; an IPv4-mapped IPv6 address has the key of its IPv4. */
  key: string;
  /** The bytes the range checks look at (4 for IPv4, 16 for IPv6). */
  bytes: Uint8Array;
  /** What the connection uses. */
  connect: ResolvedAddress;
}

type Host = { kind: 'ip'; ip: IpAddress } | { kind: 'name'; name: string };

function readHost(parsed: ParsedUri): Host | null {
  const host = hostFromRaw(parsed.rawHost, parsed.bracketed);
  if (!host || !SPECIAL_SCHEMES.has(parsed.scheme)) return host;
  // What undici will connect to must be what was checked here.
  const bracketed = parsed.url.hostname.startsWith('[');
  const whatwg = hostFromRaw(
    bracketed ? parsed.url.hostname.slice(1, -1) : parsed.url.hostname,
    bracketed,
  );
  return whatwg && hostKey(whatwg) === hostKey(host) ? host : null;
}

/**
 * Literals must be in the one form every parser reads alike: dotted-quad IPv4 without leading
 * zeros, or bracketed IPv6. Hex, octal, integer and shorthand forms (`0x7f.1`, `2130706433`,
 * `127.1`, `0177.0.0.1`) are refused, not reinterpreted.
 */
function hostFromRaw(raw: string, bracketed: boolean): Host | null {
  if (bracketed) {
    const ip = parseIp(raw, 6);
    return ip && { kind: 'ip', ip };
  }
  const ip = parseIp(raw, 4);
  if (ip) return { kind: 'ip', ip };
  const name = normalizeName(raw);
  return name === null ? null : { kind: 'name', name };
}

function hostKey(host: Host): string {
  return host.kind === 'ip' ? host.ip.key : host.name;
}

/**
 * Lower case, IDNA (punycode) and without the trailing dot of a fully qualified name. Null for
 * an invalid name, and for one that is an IPv4 address in disguise: the WHATWG host parser (like
 * `inet_aton`) reads `0x7f.1`, `127.1` or full-width digits as addresses.
 */
function normalizeName(raw: string): string | null {
  if (raw.includes('%')) return null;
  const ascii = domainToASCII(raw);
  if (ascii === '' || parseIPv4(ascii) !== null) return null;
  const name = ascii.endsWith('.') ? ascii.slice(0, -1) : ascii;
  if (/^[\d.]*$/.test(name) || name.split('.').includes('')) return null;
  return name;
}

interface HostLists {
  /** Null when no allow-list is configured. */
  allowed: Set<string> | null;
  denied: Set<string>;
}

function hostLists(options: UriFilterOptions): HostLists {
  // The choice between the lists is made on the configured entries, so an allow-list whose
  // entries are all malformed still refuses everything instead of falling back to the deny-list.
  if (options.allowedHosts.length > 0) {
    return { allowed: new Set(options.allowedHosts.map(listKey)), denied: new Set() };
  }
  return { allowed: null, denied: new Set(options.disallowedHosts.map(listKey)) };
}

function listKey(entry: string): string {
  const text = entry.trim().toLowerCase();
  const unbracketed = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const ip = parseIp(unbracketed, 4) ?? parseIp(unbracketed, 6);
  return ip?.key ?? normalizeName(unbracketed) ?? text;
}

/**
 * An allow-listed name vouches for all its addresses, an allow-listed address for itself.
 * Without an allow-list, an address is refused when it is denied or in a refused range.
 */
function addressAccepted(
  name: string | null,
  ip: IpAddress,
  lists: HostLists,
  options: UriFilterOptions,
): boolean {
  if (lists.allowed !== null) {
    return (name !== null && lists.allowed.has(name)) || lists.allowed.has(ip.key);
  }
  if (lists.denied.has(ip.key)) return false;
  return !(options.refusePrivateAddresses && isRefusedAddress(ip.bytes));
}

/** A name that does not resolve is refused, as upstream does. */
async function resolveName(name: string, options: UriFilterOptions): Promise<IpAddress[]> {
  const lookup = options.lookup ?? ((host: string) => systemLookup(host, { all: true }));
  let answers: ResolvedAddress[];
  try {
    answers = await lookup(name);
  } catch {
    return [];
  }
  const parsed = answers.map((answer) => {
    // A scope id (`fe80::1%eth0`) selects an interface; the address itself is what is checked.
    const address = answer.address.split('%')[0] ?? '';
    return parseIp(address, 4) ?? parseIp(address, 6);
  });
  return parsed
    .map((ip, i) => ip && { ...ip, connect: answers[i] ?? ip.connect })
    .filter((ip): ip is IpAddress => ip !== null);
}

// ---------------------------------------------------------------------------------------------
// IP addresses

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function parseIPv4(text: string): Uint8Array | null {
  return IPV4.test(text) ? Uint8Array.from(text.split('.').map(Number)) : null;
}

/** RFC 4291 text forms, including a dotted IPv4 tail; no scope id. */
function parseIPv6(text: string): Uint8Array | null {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const compressed = halves.length === 2;
  const head = parseGroups(halves[0] ?? '', !compressed);
  const tail = compressed ? parseGroups(halves[1] ?? '', true) : [];
  if (!head || !tail) return null;
  const missing = 8 - head.length - tail.length;
  if (compressed ? missing < 1 : missing !== 0) return null;
  const groups = [...head, ...Array<number>(compressed ? missing : 0).fill(0), ...tail];
  return Uint8Array.from(groups.flatMap((group) => [group >> 8, group & 0xff]));
}

function parseGroups(part: string, ipv4Tail: boolean): number[] | null {
  if (part === '') return [];
  const pieces = part.split(':');
  const groups: number[] = [];
  for (const [i, piece] of pieces.entries()) {
    if (ipv4Tail && i === pieces.length - 1 && piece.includes('.')) {
      const v4 = parseIPv4(piece);
      if (!v4) return null;
      groups.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
    } else if (/^[0-9a-f]{1,4}$/i.test(piece)) {
      groups.push(parseInt(piece, 16));
    } else {
      return null;
    }
  }
  return groups;
}

function parseIp(text: string, family: 4 | 6): IpAddress | null {
  const bytes = family === 4 ? parseIPv4(text) : parseIPv6(text);
  if (!bytes) return null;
  const mapped = family === 6 ? embeddedIPv4(bytes, MAPPED) : null;
  // Strict IPv4 text is already canonical; IPv6 is keyed by value since it has many spellings.
  const key = family === 4 ? text : (mapped?.join('.') ?? `6:${Array.from(bytes).join(':')}`);
  return { key, bytes, connect: { address: text, family } };
}

// ---------------------------------------------------------------------------------------------
// Refused ranges

interface Cidr {
  bytes: Uint8Array;
  prefix: number;
}

function cidr(text: string): Cidr {
  const [address = '', prefix = ''] = text.split('/');
  const bytes = parseIPv4(address) ?? parseIPv6(address);
  if (!bytes) throw new Error(`bad range ${text}`);
  return { bytes, prefix: Number(prefix) };
}

function inRange(bytes: Uint8Array, range: Cidr): boolean {
  if (bytes.length !== range.bytes.length) return false;
  for (let bit = 0; bit < range.prefix; bit += 8) {
    const width = Math.min(8, range.prefix - bit);
    const mask = (0xff << (8 - width)) & 0xff;
    const index = bit / 8;
    if (((bytes[index] ?? 0) & mask) !== ((range.bytes[index] ?? 0) & mask)) return false;
  }
  return true;
}

const REFUSED_RANGES: Cidr[] = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the local host on Linux
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4', // reserved, and the broadcast address
  '::/128',
  '::1/128',
  '64:ff9b:1::/48', // local-use NAT64, which translates into private networks
  'fc00::/7',
  'fe80::/10',
  'fec0::/10', // deprecated site-local
  'ff00::/8',
  // Metadata services, already inside the ranges above; named so that a narrower list
  // above can never let them through.
  '169.254.169.254/32',
  'fd00:ec2::254/128',
].map(cidr);

/** IPv6 forms that carry an IPv4 address, with the byte offset of that address. */
const MAPPED = { range: cidr('::ffff:0:0/96'), offset: 12 };
const EMBEDDING = [
  MAPPED,
  { range: cidr('::/96'), offset: 12 }, // IPv4-compatible (deprecated)
  { range: cidr('64:ff9b::/96'), offset: 12 }, // NAT64 well-known prefix
  { range: cidr('2002::/16'), offset: 2 }, // 6to4
];

function embeddedIPv4(
  bytes: Uint8Array,
  embedding: { range: Cidr; offset: number },
): Uint8Array | null {
  if (!inRange(bytes, embedding.range)) return null;
  return bytes.subarray(embedding.offset, embedding.offset + 4);
}

function isRefusedAddress(bytes: Uint8Array): boolean {
  if (REFUSED_RANGES.some((range) => inRange(bytes, range))) return true;
  return EMBEDDING.some((embedding) => {
    const v4 = embeddedIPv4(bytes, embedding);
    return v4 !== null && REFUSED_RANGES.some((range) => inRange(v4, range));
  });
}
