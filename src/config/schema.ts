/**
 * Every configuration option Glimpse reads, with its type, default and meaning.
 *
 * Options come from an optional JSON file (GLIMPSE_CONFIG or ./glimpse.json) and from
 * GLIMPSE_<OPTION_NAME> environment variables, which win over the file. Option names follow
 * upstream Glance's where an equivalent exists, so operators can carry their settings over.
 */
export type OptionType = 'string' | 'integer' | 'boolean' | 'list' | 'object';

export interface OptionSpec {
  readonly type: OptionType;
  readonly default: string | number | boolean | readonly string[] | StoreOptionsByStore;
  readonly description: string;
  readonly enum?: readonly string[];
  readonly minimum?: number;
  readonly maximum?: number;
}

/** Settings of each named store, keyed by store id (the `object` option type). */
export type StoreOptionsByStore = Readonly<Record<string, Readonly<Record<string, unknown>>>>;

const TIB = 1024 ** 4;

export const OPTIONS = {
  host: { type: 'string', default: '127.0.0.1', description: 'Address the API listens on.' },
  port: {
    type: 'integer',
    default: 9292,
    minimum: 0,
    maximum: 65535,
    description: 'TCP port the API listens on (0 picks a free port).',
  },
  workers: {
    type: 'integer',
    default: 1,
    minimum: 1,
    maximum: 64,
    description:
      'API processes serving the port together, each a full server sharing the database and ' +
      'the stores (upstream Glance starts one per CPU). One process uses one core.',
  },
  data_dir: {
    type: 'string',
    default: './data',
    description: 'Directory for the SQLite database, the file store and staging.',
  },
  database_url: {
    type: 'string',
    default: '',
    description:
      'Metadata database. Empty: SQLite in data_dir/glimpse.sqlite. ' +
      'postgres://user@host:port/db: PostgreSQL.',
  },
  database_pool_size: {
    type: 'integer',
    default: 10,
    minimum: 1,
    maximum: 200,
    description: 'PostgreSQL connections per process.',
  },
  auth_strategy: {
    type: 'string',
    default: 'noauth',
    enum: ['noauth', 'keystone'],
    description:
      'keystone validates X-Auth-Token with Keystone. noauth trusts X-Project-Id, X-User-Id ' +
      'and X-Roles headers (development only; a caller sending none of them is an admin).',
  },
  keystone_auth_url: {
    type: 'string',
    default: '',
    description: 'Keystone identity API, e.g. http://127.0.0.1:5000/v3 (keystone mode).',
  },
  keystone_username: {
    type: 'string',
    default: 'glimpse',
    description: 'Service user that validates tokens (needs the service or admin role).',
  },
  keystone_password: { type: 'string', default: '', description: 'Password of the service user.' },
  keystone_project_name: {
    type: 'string',
    default: 'service',
    description: 'Project the service user scopes its token to.',
  },
  keystone_user_domain_name: {
    type: 'string',
    default: 'Default',
    description: 'Domain of the service user.',
  },
  keystone_project_domain_name: {
    type: 'string',
    default: 'Default',
    description: 'Domain of the service project.',
  },
  token_cache_seconds: {
    type: 'integer',
    default: 300,
    minimum: 0,
    description:
      'How long a validated token is trusted without asking Keystone again; a revoked ' +
      'token keeps working at most this long.',
  },
  token_cache_size: {
    type: 'integer',
    default: 10000,
    minimum: 1,
    description: 'Validated tokens kept in memory.',
  },
  keystone_timeout_seconds: {
    type: 'integer',
    default: 5,
    minimum: 1,
    description: 'Time allowed for each call to Keystone before answering 503.',
  },
  log_level: {
    type: 'string',
    default: 'info',
    enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    description: 'Least severe log level written to standard output.',
  },
  public_endpoint: {
    type: 'string',
    default: '',
    description: 'Base URL used in the versions document and Location headers.',
  },
  limit_param_default: {
    type: 'integer',
    default: 25,
    minimum: 1,
    description: 'Page size of list calls without a limit.',
  },
  api_limit_max: {
    type: 'integer',
    default: 1000,
    minimum: 1,
    description: 'Largest page size a list call returns.',
  },
  image_property_quota: {
    type: 'integer',
    default: 128,
    description: 'Additional properties per image (negative: unlimited).',
  },
  image_tag_quota: {
    type: 'integer',
    default: 128,
    description: 'Tags per image (negative: unlimited).',
  },
  image_member_quota: {
    type: 'integer',
    default: 128,
    description: 'Members per image (negative: unlimited).',
  },
  image_size_cap: {
    type: 'integer',
    default: TIB,
    minimum: 0,
    maximum: Number.MAX_SAFE_INTEGER,
    description: 'Largest image, in bytes, that can be uploaded or staged.',
  },
  user_storage_quota: {
    type: 'string',
    default: '0',
    description:
      'Data a project may keep in the stores: bytes, or a number followed by B, KB, MB, GB ' +
      'or TB (powers of 1024, no space), e.g. 10GB; 0: no quota. Ignored when ' +
      'use_keystone_limits is on.',
  },
  use_keystone_limits: {
    type: 'boolean',
    default: false,
    description:
      'Enforce the Keystone unified limits image_size_total, image_stage_total, ' +
      'image_count_total and image_count_uploading. They are read with the keystone_* ' +
      'credentials and a system-scoped token: the service user needs a role on the system, ' +
      'e.g. reader.',
  },
  keystone_limits_service_id: {
    type: 'string',
    default: '',
    description:
      "Keystone's id of the image service whose limits apply; empty: the one service of " +
      'type image.',
  },
  keystone_limits_region_id: {
    type: 'string',
    default: '',
    description: 'Region whose limits apply; empty: limits registered without a region.',
  },
  keystone_limits_cache_seconds: {
    type: 'integer',
    default: 30,
    minimum: 0,
    description: 'How long limits read from Keystone are used before they are read again.',
  },
  disk_formats: {
    type: 'list',
    default: ['ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso', 'ploop'],
    description: 'Accepted values of disk_format.',
  },
  container_formats: {
    type: 'list',
    default: ['ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed'],
    description: 'Accepted values of container_format.',
  },
  policy_file: {
    type: 'string',
    default: '',
    description:
      'Policy overrides in upstream format (YAML, or JSON for a .json file); empty: ' +
      'the built-in secure-RBAC defaults.',
  },
  property_protection_file: {
    type: 'string',
    default: '',
    description:
      'Property protections file in upstream format (INI sections of property-name ' +
      'expressions with create/read/update/delete rules); empty: no protections.',
  },
  property_protection_rule_format: {
    type: 'string',
    default: 'roles',
    enum: ['roles', 'policies'],
    description: 'Whether protection rules name roles or policy rules.',
  },
  filesystem_store_datadir: {
    type: 'string',
    default: '',
    description: 'Directory of the file store (empty: data_dir/images).',
  },
  filesystem_store_fsync: {
    type: 'boolean',
    default: true,
    description:
      'Flush image data to disk before the image becomes active. Turning it off is faster ' +
      'but a power loss can then lose or corrupt recently uploaded images.',
  },
  enabled_backends: {
    type: 'list',
    default: [],
    description:
      'Named stores as id:type, type being file, swift, s3 or http (read-only). Empty: one ' +
      'file store and no multi-store API. Set: GET /v2/info/stores and the store headers.',
  },
  default_backend: {
    type: 'string',
    default: '',
    description: 'Id of the store new data goes to when a request names none (multi-store).',
  },
  store_options: {
    type: 'object',
    default: {},
    description:
      'Settings of each store, keyed by store id: description, weight (higher is read ' +
      'first), and the driver settings listed under "Store settings" below.',
  },
  show_multiple_locations: {
    type: 'boolean',
    default: false,
    description:
      'Show the locations field and allow changing /locations through PATCH (exposes where ' +
      'data lives; leave off on public clouds).',
  },
  show_image_direct_url: {
    type: 'boolean',
    default: false,
    description: "Show direct_url, the URL of the image's preferred location.",
  },
  image_location_quota: {
    type: 'integer',
    default: 10,
    minimum: -1,
    description: 'Most locations one image may have (-1: no limit).',
  },
  verify_download_checksum: {
    type: 'boolean',
    default: true,
    description:
      'Check downloaded data while streaming against the CRC-32 recorded at upload (or, for ' +
      'data recorded without one, its MD5 and os_hash_value); abort on a mismatch.',
  },
  worker_heartbeat_seconds: {
    type: 'integer',
    default: 10,
    minimum: 1,
    description:
      'How often a process proves it is alive; writes of a process silent for three ' +
      'periods (on another host) are undone.',
  },
  enabled_import_methods: {
    type: 'list',
    default: ['glance-direct', 'web-download', 'copy-image'],
    enum: ['glance-direct', 'web-download', 'copy-image', 'glance-download'],
    description:
      'Interoperable import methods offered to clients. copy-image is only offered with ' +
      'several stores (enabled_backends); glance-download needs auth_strategy keystone.',
  },
  image_import_plugins: {
    type: 'list',
    default: [],
    enum: ['image_decompression', 'image_conversion', 'inject_image_metadata'],
    description: 'Plugins run, in this order, on imported data before it is stored.',
  },
  image_conversion_output_format: {
    type: 'string',
    default: 'raw',
    enum: ['raw', 'qcow2', 'vmdk'],
    description: 'Disk format the image_conversion plugin converts imports to.',
  },
  vmdk_allowed_types: {
    type: 'list',
    default: ['streamOptimized', 'monolithicSparse'],
    description: 'VMDK create-types the image_conversion plugin accepts.',
  },
  inject_metadata_properties: {
    type: 'list',
    default: [],
    description: 'key:value properties the inject_image_metadata plugin adds to imports.',
  },
  inject_ignore_user_roles: {
    type: 'list',
    default: ['admin'],
    description: 'Callers with one of these roles get no injected properties.',
  },
  glance_download_extra_properties: {
    type: 'list',
    default: ['hw_', 'trait:', 'os_distro', 'os_secure_boot', 'os_type'],
    description:
      'glance-download copies the remote image properties whose names start with one of ' +
      'these (os_glance* never).',
  },
  allowed_schemes: {
    type: 'list',
    default: ['http', 'https'],
    description: 'URL schemes web-download may fetch (empty: any not in disallowed_schemes).',
  },
  disallowed_schemes: {
    type: 'list',
    default: [],
    description: 'URL schemes web-download refuses when allowed_schemes is empty.',
  },
  allowed_hosts: {
    type: 'list',
    default: [],
    description:
      'Hosts (names or addresses) web-download may fetch from; when set, only these. A ' +
      'host listed here may also be a loopback or private address.',
  },
  disallowed_hosts: {
    type: 'list',
    default: [],
    description: 'Hosts web-download refuses when allowed_hosts is empty.',
  },
  allowed_ports: {
    type: 'list',
    default: ['80', '443'],
    description: 'Explicit URL ports web-download accepts (a URL without a port passes).',
  },
  disallowed_ports: {
    type: 'list',
    default: [],
    description: 'Explicit URL ports web-download refuses when allowed_ports is empty.',
  },
  web_download_refuse_private_addresses: {
    type: 'boolean',
    default: true,
    description:
      'Refuse web-download from loopback, private, link-local and metadata addresses, ' +
      'even behind a host name, unless the host is in allowed_hosts.',
  },
  web_download_timeout_seconds: {
    type: 'integer',
    default: 30,
    minimum: 1,
    description: 'web-download gives up after this long without connecting or receiving data.',
  },
  task_workers: {
    type: 'integer',
    default: 2,
    minimum: 1,
    maximum: 64,
    description: 'Tasks (imports) one process runs at the same time.',
  },
  task_time_to_live: {
    type: 'integer',
    default: 48,
    minimum: 1,
    description: 'Hours a finished task is kept before it is purged.',
  },
  hashing_algorithm: {
    type: 'string',
    default: 'sha512',
    description: 'Algorithm of os_hash_value (any digest known to OpenSSL).',
  },
  max_request_id_length: {
    type: 'integer',
    default: 64,
    minimum: 1,
    description: 'Longest X-Openstack-Request-ID accepted from a client.',
  },
  max_json_body_bytes: {
    type: 'integer',
    default: 1024 * 1024,
    minimum: 1024,
    description: 'Largest JSON request body accepted.',
  },
  client_idle_timeout_seconds: {
    type: 'integer',
    default: 300,
    minimum: 1,
    description: 'A connection on which the client sends nothing for this long is closed.',
  },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTIONS;

type ValueOf<S extends OptionSpec> = S['type'] extends 'integer'
  ? number
  : S['type'] extends 'boolean'
    ? boolean
    : S['type'] extends 'list'
      ? readonly string[]
      : S['type'] extends 'object'
        ? StoreOptionsByStore
        : string;

/** The validated, frozen configuration the whole process shares. */
export type Config = { readonly [K in OptionName]: ValueOf<(typeof OPTIONS)[K]> };
