/**
 * The settings of a Swift store, named as upstream Glance's glance_store names them, and their
 * translation into the driver's options. Sizes are configured in MiB, as upstream does, and
 * handed to the driver in bytes.
 *
 * Authentication is either Swift's own (version 1: tempauth, swauth; the user is
 * `account:user`) or Keystone's identity API v3 (version 3), whose catalog gives the storage
 * URL. Upstream's default, Keystone v2, is gone from Keystone and is refused.
 *
 * This module opens no connection, so the configuration layer can list and check the settings
 * of a deployment that never talks to Swift.
 */
import { settingsChecker, type StoreSettingSpecs } from '../settings.js';

export type SwiftEndpointInterface = 'public' | 'internal' | 'admin';

/** What the driver is built from; sizes in bytes, times in milliseconds. */
export interface SwiftStoreOptions {
  readonly id: string;
  /** Version 1: the auth URL itself (…/auth/v1.0); version 3: Keystone's …/v3. */
  readonly authUrl: string;
  readonly authVersion: '1' | '3';
  /** Version 1: `account:user`; version 3: the user's name. */
  readonly user: string;
  /** The key (version 1) or password (version 3). */
  readonly key: string;
  readonly container: string;
  /** Data up to this size that fits one segment is kept as a plain object, not a manifest. */
  readonly largeObjectSize: number;
  /** Size of the segments data is written in. */
  readonly largeObjectChunkSize: number;
  /** Create the container and its segments container when they do not exist. */
  readonly createContainerOnPut: boolean;
  /** Version 3 only: the project to scope the token to, and the domains of both names. */
  readonly projectName?: string;
  readonly userDomainName?: string;
  readonly projectDomainName?: string;
  /** Version 3 only: the catalog region to take the endpoint from (any when unset). */
  readonly region?: string;
  /** Version 3 only: the catalog entry's interface (public unless told). */
  readonly endpointType?: SwiftEndpointInterface;
  /** Version 3 only: the catalog entry's service type. */
  readonly serviceType?: string;
  readonly connectTimeoutMs?: number;
  /** Until an answer's headers arrive once the request is sent. */
  readonly requestTimeoutMs?: number;
  /** Longest silence while an answer's body arrives (not counted while the reader pauses). */
  readonly bodyTimeoutMs?: number;
}

const MIB = 1024 * 1024;
/** Swift's default limit on one object (max_file_size), in MiB. */
const MAX_OBJECT_MIB = 5 * 1024;

export const SWIFT_STORE_SETTINGS = {
  swift_store_auth_address: {
    type: 'string',
    default: null,
    required: true,
    description:
      'Authentication URL: http://host:8080/auth/v1.0 for Swift auth (version 1), or ' +
      "Keystone's http://host:5000/v3 (version 3).",
  },
  swift_store_auth_version: {
    type: 'string',
    default: '3',
    enum: ['1', '3'],
    description: '1: Swift auth (tempauth); 3: Keystone identity API v3.',
  },
  swift_store_user: {
    type: 'string',
    default: null,
    required: true,
    description:
      'Version 1: account:user. Version 3: the user name, or project:user when ' +
      'swift_store_project_name is not set.',
  },
  swift_store_key: {
    type: 'string',
    default: null,
    required: true,
    description: 'The key (version 1) or password (version 3) of swift_store_user.',
  },
  swift_store_container: {
    type: 'string',
    default: 'glance',
    // `-segments` is appended, and Swift allows container names of up to 256 bytes.
    pattern: '^[^/]{1,247}$',
    description:
      'Container holding the image data; segments of large images go to ' +
      '<container>-segments.',
  },
  swift_store_large_object_size: {
    type: 'integer',
    default: MAX_OBJECT_MIB,
    minimum: 1,
    maximum: MAX_OBJECT_MIB,
    description:
      'MiB. Data of a known size below this is sent in one PUT, as a plain object. Data of ' +
      'an unknown or larger size is sent in chunks and kept as a static large object (a ' +
      'manifest of segments), or as a plain object when it was one chunk of up to this size.',
  },
  swift_store_large_object_chunk_size: {
    type: 'integer',
    default: 200,
    minimum: 1,
    maximum: MAX_OBJECT_MIB,
    description:
      'MiB. Segment size of large objects. An image can have at most 1,000 segments. ' +
      'Writes stream; no segment is held in memory.',
  },
  swift_store_create_container_on_put: {
    type: 'boolean',
    default: true,
    description: 'Create the container and the segments container when they do not exist.',
  },
  swift_store_project_name: {
    type: 'string',
    default: '',
    description: 'Version 3: the project the token is scoped to.',
  },
  swift_store_user_domain_name: {
    type: 'string',
    default: 'Default',
    description: 'Version 3: the domain of swift_store_user.',
  },
  swift_store_project_domain_name: {
    type: 'string',
    default: 'Default',
    description: 'Version 3: the domain of swift_store_project_name.',
  },
  swift_store_region: {
    type: 'string',
    default: '',
    description: 'Version 3: the catalog region whose object-store endpoint is used (any).',
  },
  swift_store_endpoint_type: {
    type: 'string',
    default: 'publicURL',
    enum: ['publicURL', 'internalURL', 'adminURL', 'public', 'internal', 'admin'],
    description: 'Version 3: which interface of the object-store endpoint is used.',
  },
  swift_store_service_type: {
    type: 'string',
    default: 'object-store',
    description: 'Version 3: the catalog service type of Swift.',
  },
} as const satisfies StoreSettingSpecs;

export type SwiftStoreSettingName = keyof typeof SWIFT_STORE_SETTINGS;

const checkSettings = settingsChecker(SWIFT_STORE_SETTINGS);

/** The driver options of store `id`; throws an Error naming the store and the bad setting. */
export function parseSwiftSettings(
  id: string,
  settings: Record<string, unknown>,
): SwiftStoreOptions {
  // Versions are numbers to YAML and to most people: accept 1 and 3 as well as '1' and '3'.
  const version = settings.swift_store_auth_version;
  const given =
    typeof version === 'number'
      ? { ...settings, swift_store_auth_version: String(version) }
      : settings;
  const value = checkSettings(id, given);

  const authVersion = value('swift_store_auth_version') as '1' | '3';
  const authUrl = parseAuthUrl(id, value('swift_store_auth_address') as string);
  const options: SwiftStoreOptions = {
    id,
    authUrl,
    authVersion,
    user: value('swift_store_user') as string,
    key: value('swift_store_key') as string,
    container: value('swift_store_container') as string,
    largeObjectSize: (value('swift_store_large_object_size') as number) * MIB,
    largeObjectChunkSize: (value('swift_store_large_object_chunk_size') as number) * MIB,
    createContainerOnPut: value('swift_store_create_container_on_put') as boolean,
  };
  return authVersion === '1' ? options : { ...options, ...keystoneOptions(id, value) };
}

/** The version 3 settings; a `project:user` user names the project when no project is set. */
function keystoneOptions(
  id: string,
  value: (name: SwiftStoreSettingName) => unknown,
): Partial<SwiftStoreOptions> {
  let user = value('swift_store_user') as string;
  let projectName = value('swift_store_project_name') as string;
  if (projectName === '' && user.includes(':')) {
    projectName = user.slice(0, user.indexOf(':'));
    user = user.slice(user.indexOf(':') + 1);
  }
  if (projectName === '' || user === '') {
    throw new Error(
      `store ${id}: setting 'swift_store_project_name' is required with ` +
        `swift_store_auth_version 3 (or a swift_store_user of the form project:user)`,
    );
  }
  const region = value('swift_store_region') as string;
  return {
    user,
    projectName,
    userDomainName: value('swift_store_user_domain_name') as string,
    projectDomainName: value('swift_store_project_domain_name') as string,
    ...(region === '' ? {} : { region }),
    endpointType: endpointInterface(value('swift_store_endpoint_type') as string),
    serviceType: value('swift_store_service_type') as string,
  };
}

/** Upstream names interfaces as the Keystone v2 catalog did (publicURL...). */
function endpointInterface(type: string): SwiftEndpointInterface {
  return type.replace(/URL$/, '') as SwiftEndpointInterface;
}

function parseAuthUrl(id: string, address: string): string {
  let url: URL | null = null;
  try {
    url = new URL(address);
  } catch {
    url = null;
  }
  if (
    url === null ||
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    url.username !== '' ||
    url.password !== ''
  ) {
    throw new Error(
      `store ${id}: setting 'swift_store_auth_address' must be an http(s) URL without ` +
        `credentials, got '${address}'`,
    );
  }
  return url.href.replace(/\/+$/, '');
}
