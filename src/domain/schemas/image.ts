/**
 * The JSON schemas of images, as served under /v2/schemas and used to validate requests.
 *
 * Clients read these documents: python-glanceclient builds PATCH bodies from the property list
 * (a property without `is_base: false` counts as a base property) and validates responses
 * against it, so the property names, types and patterns must match upstream Glance exactly.
 */
type JsonSchema = Record<string, unknown>;

export const UUID_PATTERN =
  '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$';

const readOnlyString = (description: string): JsonSchema => ({
  type: 'string',
  readOnly: true,
  description,
});

function baseProperties(diskFormats: readonly string[], containerFormats: readonly string[]) {
  return {
    id: { type: 'string', description: 'Identifier of the image', pattern: UUID_PATTERN },
    name: { type: ['null', 'string'], description: 'Name of the image', maxLength: 255 },
    status: {
      type: 'string',
      readOnly: true,
      description: 'Lifecycle status of the image',
      enum: [
        'queued',
        'saving',
        'active',
        'killed',
        'deleted',
        'uploading',
        'importing',
        'pending_delete',
        'deactivated',
      ],
    },
    visibility: {
      type: 'string',
      description: 'Who can see the image',
      enum: ['community', 'public', 'private', 'shared'],
    },
    protected: { type: 'boolean', description: 'When true the image cannot be deleted.' },
    os_hidden: { type: 'boolean', description: 'When true the image is left out of lists.' },
    checksum: {
      type: ['null', 'string'],
      readOnly: true,
      description: 'MD5 of the image data',
      maxLength: 32,
    },
    os_hash_algo: {
      type: ['null', 'string'],
      readOnly: true,
      description: 'Algorithm of os_hash_value',
      maxLength: 64,
    },
    os_hash_value: {
      type: ['null', 'string'],
      readOnly: true,
      description: 'Hex digest of the image data computed with os_hash_algo',
      maxLength: 128,
    },
    owner: { type: ['null', 'string'], description: 'Project owning the image', maxLength: 255 },
    size: { type: ['null', 'integer'], readOnly: true, description: 'Bytes of image data' },
    virtual_size: {
      type: ['null', 'integer'],
      readOnly: true,
      description: 'Bytes of the virtual disk',
    },
    container_format: {
      type: ['null', 'string'],
      description: 'Container format of the data',
      enum: [null, ...containerFormats],
    },
    disk_format: {
      type: ['null', 'string'],
      description: 'Disk format of the data',
      enum: [null, ...diskFormats],
    },
    created_at: readOnlyString('When the image was created'),
    updated_at: readOnlyString('When the image was last changed'),
    tags: {
      type: 'array',
      description: 'Free-form labels',
      items: { type: 'string', maxLength: 255 },
    },
    direct_url: readOnlyString('URL of the data in an external store'),
    min_ram: { type: 'integer', description: 'Memory (MB) needed to boot the image' },
    min_disk: { type: 'integer', description: 'Disk (GB) needed to boot the image' },
    self: readOnlyString('URL of the image'),
    file: readOnlyString('URL of the image data'),
    stores: readOnlyString('Comma-separated ids of the stores holding the data'),
    schema: readOnlyString('URL of the image schema'),
    locations: locationsProperty(),
  };
}

function locationsProperty(): JsonSchema {
  return {
    type: 'array',
    description: 'Where the image data is kept',
    items: {
      type: 'object',
      properties: {
        url: { type: 'string', maxLength: 255 },
        metadata: { type: 'object' },
        validation_data: {
          description: 'Hashes the data at this location must match',
          type: 'object',
          writeOnly: true,
          additionalProperties: false,
          properties: {
            checksum: { type: 'string', minLength: 32, maxLength: 32 },
            os_hash_algo: { type: 'string', maxLength: 64 },
            os_hash_value: { type: 'string', maxLength: 128 },
          },
          required: ['os_hash_algo', 'os_hash_value'],
        },
      },
      required: ['url', 'metadata'],
    },
  };
}

/** Well-known additional properties that are stored as properties yet schema-checked. */
function customProperties(): Record<string, JsonSchema> {
  const uuidOrNull = (description: string): JsonSchema => ({
    type: ['null', 'string'],
    pattern: UUID_PATTERN,
    description,
    is_base: false,
  });
  const text = (description: string): JsonSchema => ({
    type: 'string',
    description,
    is_base: false,
  });
  return {
    kernel_id: uuidOrNull('Image to boot as the kernel of an AMI-style image'),
    ramdisk_id: uuidOrNull('Image to boot as the ramdisk of an AMI-style image'),
    instance_uuid: text('Instance this image was taken from (informational)'),
    architecture: text('CPU architecture the image runs on'),
    os_distro: text('Operating system distribution'),
    os_version: text('Operating system version'),
    description: text('Free-text description of the image'),
    cinder_encryption_key_id: text('Key manager id of the volume encryption key'),
    cinder_encryption_key_deletion_policy: {
      type: 'string',
      description: 'Whether deleting the image also deletes its encryption key',
      enum: ['on_image_deletion', 'do_not_delete'],
      is_base: false,
    },
  };
}

export interface FormatLists {
  readonly diskFormats: readonly string[];
  readonly containerFormats: readonly string[];
}

export function imageSchema(formats: FormatLists): JsonSchema {
  return {
    name: 'image',
    properties: {
      ...baseProperties(formats.diskFormats, formats.containerFormats),
      ...customProperties(),
    },
    additionalProperties: { type: 'string' },
    links: [
      { rel: 'self', href: '{self}' },
      { rel: 'enclosure', href: '{file}' },
      { rel: 'describedby', href: '{schema}' },
    ],
  };
}

export function imagesSchema(formats: FormatLists): JsonSchema {
  return {
    name: 'images',
    properties: {
      images: { type: 'array', items: imageSchema(formats) },
      first: { type: 'string' },
      next: { type: 'string' },
      schema: { type: 'string' },
    },
    links: [
      { rel: 'first', href: '{first}' },
      { rel: 'next', href: '{next}' },
      { rel: 'describedby', href: '{schema}' },
    ],
  };
}
