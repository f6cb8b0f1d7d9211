/** Who is calling, as established by the auth layer for one request. */
export interface RequestContext {
  readonly requestId: string;
  readonly projectId: string | null;
  readonly userId: string | null;
  /** Lower-cased role names, with implied roles already expanded (admin ⇒ member ⇒ reader). */
  readonly roles: readonly string[];
  readonly isAdmin: boolean;
  /** Roles of an accompanying service token (X-Service-Token), if one was sent. */
  readonly serviceRoles?: readonly string[];
  /** The caller's token in keystone mode, for calls on its behalf; never stored or logged. */
  readonly authToken?: string;
}

/** Roles each role implies, as Keystone's default role inference rules define them. */
const IMPLIED_ROLES: Readonly<Record<string, readonly string[]>> = {
  admin: ['member', 'reader'],
  member: ['reader'],
};

export function expandRoles(roles: Iterable<string>): string[] {
  const expanded = new Set<string>();
  for (const role of roles) {
    const name = role.trim().toLowerCase();
    if (name === '') continue;
    expanded.add(name);
    for (const implied of IMPLIED_ROLES[name] ?? []) expanded.add(implied);
  }
  return [...expanded];
}

export function hasRole(context: RequestContext, role: string): boolean {
  return context.roles.includes(role);
}
