/**
 * Upstream Glance's default policy (secure RBAC, project scope), as rule strings in the
 * oslo.policy language so that a policy file can override any of them by name. The strings
 * match upstream's text exactly, so operators can copy rules between the two.
 *
 * Targets: `project_id` and `owner` are the image (or namespace) owner, `member_id` is the
 * caller's project when it is a member of a shared image, `visibility` the image visibility.
 */

// Building blocks, as upstream composes them.
const ADMIN = 'rule:context_is_admin';
const SERVICE = 'rule:service_api';
const DEFAULT = 'rule:default';
const METADEF_ADMIN = 'rule:metadef_admin';

const PROJECT_MEMBER = 'role:member and project_id:%(project_id)s';
const PROJECT_READER = 'role:reader and project_id:%(project_id)s';
const IMAGE_MEMBER = 'project_id:%(member_id)s';

/** The caller's project owns the image, is a member of it, or the image is open to all. */
const REACHABLE_IMAGE =
  `project_id:%(project_id)s or ${IMAGE_MEMBER} or 'community':%(visibility)s` +
  ` or 'public':%(visibility)s or 'shared':%(visibility)s`;

const ADMIN_OR_PROJECT_MEMBER = `${ADMIN} or (${PROJECT_MEMBER})`;
const ADMIN_OR_PROJECT_READER = `${ADMIN} or (${PROJECT_READER})`;
const ADMIN_OR_READER_REACHABLE = `${ADMIN} or (role:reader and (${REACHABLE_IMAGE}))`;
const ADMIN_OR_MEMBER_REACHABLE = `${ADMIN} or (role:member and (${REACHABLE_IMAGE}))`;
/** Creating: the caller's project must also be the requested owner. */
const ADMIN_OR_MEMBER_OWNING = `${ADMIN} or (${PROJECT_MEMBER} and project_id:%(owner)s)`;
const SERVICE_OR_MEMBER_OWNING = `${SERVICE} or (${PROJECT_MEMBER} and project_id:%(owner)s)`;
const OWNER_OR_IMAGE_MEMBER = `project_id:%(project_id)s or ${IMAGE_MEMBER}`;
// Upstream writes this one without parentheses; precedence makes it the same as with them.
const ADMIN_OR_READER_OR_IMAGE_MEMBER = `${ADMIN} or role:reader and (${OWNER_OR_IMAGE_MEMBER})`;
const ADMIN_OR_IMAGE_MEMBER = `${ADMIN} or (role:member and ${IMAGE_MEMBER})`;
const OWNER_OR_PUBLIC = "project_id:%(project_id)s or 'public':%(visibility)s";
const ADMIN_OR_READER_PUBLIC_NAMESPACE = `${ADMIN} or (role:reader and (${OWNER_OR_PUBLIC}))`;

const BASE_RULES = {
  // Empty: allow. Upstream keeps it for old policy files whose unlisted rules fell back to it.
  default: '',
  context_is_admin: 'role:admin',
  // Upstream still lets admin act as a service, as not every service sends a service token.
  service_api: 'role:service or role:admin',
} as const;

const IMAGE_RULES = {
  add_image: ADMIN_OR_MEMBER_OWNING,
  get_images: ADMIN_OR_PROJECT_READER,
  get_image: ADMIN_OR_READER_REACHABLE,
  modify_image: ADMIN_OR_PROJECT_MEMBER,
  publicize_image: ADMIN,
  communitize_image: ADMIN_OR_PROJECT_MEMBER,
  delete_image: ADMIN_OR_PROJECT_MEMBER,
  upload_image: ADMIN_OR_PROJECT_MEMBER,
  download_image: ADMIN_OR_MEMBER_REACHABLE,
  download_from_store: ADMIN_OR_MEMBER_REACHABLE,
  deactivate: ADMIN_OR_PROJECT_MEMBER,
  reactivate: ADMIN_OR_PROJECT_MEMBER,
  copy_image: ADMIN,
  get_image_location: ADMIN_OR_PROJECT_READER,
  set_image_location: ADMIN_OR_PROJECT_MEMBER,
  delete_image_location: ADMIN,
  add_image_location: SERVICE_OR_MEMBER_OWNING,
  fetch_image_location: SERVICE,
  add_member: ADMIN_OR_PROJECT_MEMBER,
  delete_member: ADMIN_OR_PROJECT_MEMBER,
  get_member: ADMIN_OR_READER_OR_IMAGE_MEMBER,
  get_members: ADMIN_OR_READER_OR_IMAGE_MEMBER,
  modify_member: ADMIN_OR_IMAGE_MEMBER,
  stores_info_detail: `${ADMIN} or ${SERVICE}`,
} as const;

const TASK_RULES = {
  // The per-call task rules are deprecated upstream; tasks_api_access is what limits access.
  tasks_api_access: ADMIN,
  get_task: DEFAULT,
  get_tasks: DEFAULT,
  add_task: DEFAULT,
  modify_task: DEFAULT,
} as const;

const CACHE_RULES = {
  manage_image_cache: ADMIN,
  cache_image: ADMIN,
  cache_list: ADMIN,
  cache_delete: ADMIN,
  cache_clean: ADMIN,
  cache_prune: ADMIN,
  list_cached_nodes: ADMIN,
} as const;

const METADEF_RULES = {
  metadef_default: '',
  metadef_admin: ADMIN,
  get_metadef_namespace: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  get_metadef_namespaces: ADMIN_OR_PROJECT_READER,
  add_metadef_namespace: METADEF_ADMIN,
  modify_metadef_namespace: METADEF_ADMIN,
  delete_metadef_namespace: METADEF_ADMIN,
  get_metadef_object: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  get_metadef_objects: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  add_metadef_object: METADEF_ADMIN,
  modify_metadef_object: METADEF_ADMIN,
  delete_metadef_object: METADEF_ADMIN,
  list_metadef_resource_types: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  get_metadef_resource_type: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  add_metadef_resource_type_association: METADEF_ADMIN,
  remove_metadef_resource_type_association: METADEF_ADMIN,
  get_metadef_property: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  get_metadef_properties: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  add_metadef_property: METADEF_ADMIN,
  modify_metadef_property: METADEF_ADMIN,
  remove_metadef_property: METADEF_ADMIN,
  get_metadef_tag: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  get_metadef_tags: ADMIN_OR_READER_PUBLIC_NAMESPACE,
  add_metadef_tag: METADEF_ADMIN,
  add_metadef_tags: METADEF_ADMIN,
  modify_metadef_tag: METADEF_ADMIN,
  delete_metadef_tag: METADEF_ADMIN,
  delete_metadef_tags: METADEF_ADMIN,
} as const;

/** Every default rule by name. */
export const DEFAULT_RULES = {
  ...BASE_RULES,
  ...IMAGE_RULES,
  ...TASK_RULES,
  ...CACHE_RULES,
  ...METADEF_RULES,
} as const satisfies Readonly<Record<string, string>>;

/** A rule the service checks; a policy file may override each and add others of its own. */
export type PolicyAction = keyof typeof DEFAULT_RULES;
