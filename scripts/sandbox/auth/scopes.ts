/**
 * SMART scopes, v1 (`system/Patient.read`) and v2 (`system/Patient.rs`) syntax.
 * A v1 `read` is the v2 `rs`, `write` is `cud` and `*` is `cruds` (SMART v2, scopes-v2 notes).
 */

export type Permission = 'c' | 'r' | 'u' | 'd' | 's';

export interface SmartScope {
  readonly raw: string;
  readonly context: 'system' | 'patient' | 'user';
  /** A resource type or `*`. */
  readonly resourceType: string;
  readonly permissions: ReadonlySet<Permission>;
  /** A v2 granular restriction (`?category=laboratory`), when given. */
  readonly query?: string;
}

const SCOPE = /^(system|patient|user)\/(\*|[A-Z][A-Za-z]*)\.([a-z*]+)(\?.+)?$/;
const V2_PERMISSIONS = /^c?r?u?d?s?$/;

/** Returns the parsed resource scope, or undefined for anything else (malformed, `launch`, `openid`...). */
export function parseScope(raw: string): SmartScope | undefined {
  const match = SCOPE.exec(raw);
  if (!match) return undefined;
  const [, context, resourceType, access, query] = match;
  let permissions: Permission[];
  if (access === 'read') permissions = ['r', 's'];
  else if (access === 'write') permissions = ['c', 'u', 'd'];
  else if (access === '*') permissions = ['c', 'r', 'u', 'd', 's'];
  else if (access && access !== '' && V2_PERMISSIONS.test(access)) permissions = [...access] as Permission[];
  else return undefined;
  // v1 scopes have no granular form.
  if (query && (access === 'read' || access === 'write' || access === '*')) return undefined;
  return {
    raw,
    context: context as SmartScope['context'],
    resourceType: resourceType!,
    permissions: new Set(permissions),
    ...(query ? { query: query.slice(1) } : {}),
  };
}

export function splitScopes(text: string | undefined | null): string[] {
  return (text ?? '').split(/\s+/).filter((s) => s !== '');
}

/** Whether `granted` allows everything `requested` asks for. */
export function scopeCovers(granted: SmartScope, requested: SmartScope): boolean {
  if (granted.context !== requested.context) return false;
  if (granted.resourceType !== '*' && granted.resourceType !== requested.resourceType) return false;
  for (const p of requested.permissions) if (!granted.permissions.has(p)) return false;
  return granted.query === undefined || granted.query === requested.query;
}

/**
 * Whether the granted scopes allow a Bulk Data export of every resource of `type`: a system
 * scope with read and search on the type (or `*`), without a granular restriction (the export
 * cannot apply one).
 */
export function scopesAllowExport(granted: readonly SmartScope[], type: string): boolean {
  return granted.some(
    (s) =>
      s.context === 'system' &&
      (s.resourceType === '*' || s.resourceType === type) &&
      s.permissions.has('r') &&
      s.permissions.has('s') &&
      s.query === undefined,
  );
}
