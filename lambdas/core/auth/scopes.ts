import { ConfigurationError } from '../../errors.js';

/**
 * The `scope` we request from each source. SMART v2 grants `.rs` (read +
 * search), v1 `.read`; servers differ in which they understand (athenahealth
 * speaks v1), and some need a spelling of their own (Epic's
 * `system/Patient.Read`), so a per-source override replaces the computed value.
 */

export type ScopeSyntax = 'v1' | 'v2';

export interface ScopeRequest {
  /** The export's `_type`; empty means every type, i.e. `system/*`. */
  readonly resourceTypes: readonly string[];
  /** @default 'v2' */
  readonly syntax?: ScopeSyntax;
  /** `capitalized`: the v1 action as Epic spells it, `system/Patient.Read`. @default 'lower' */
  readonly casing?: 'lower' | 'capitalized';
  /** A complete scope string that wins over the computed one. */
  readonly override?: string;
  /** Appended to whatever was computed or overridden (eClinicalWorks needs `system/Group.read`). */
  readonly extraScopes?: readonly string[];
}

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;
/** RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

export function splitScope(scope: string): string[] {
  return scope.split(/\s+/).filter((token) => token !== '');
}

function assertScopeTokens(tokens: readonly string[], what: string): void {
  for (const token of tokens) {
    if (!SCOPE_TOKEN.test(token)) {
      throw new ConfigurationError(
        `${what} contains an invalid scope token; scope tokens are printable ASCII without spaces, quotes or backslashes`,
      );
    }
  }
}

function systemScope(resourceType: string, syntax: ScopeSyntax, casing: 'lower' | 'capitalized'): string {
  if (syntax === 'v2') return `system/${resourceType}.rs`;
  return `system/${resourceType}.${casing === 'capitalized' ? 'Read' : 'read'}`;
}

export function buildScope(request: ScopeRequest): string {
  const syntax = request.syntax ?? 'v2';
  const casing = request.casing ?? 'lower';
  if (syntax !== 'v1' && syntax !== 'v2') {
    throw new ConfigurationError(`scopeSyntax must be one of v1, v2 (got ${JSON.stringify(String(syntax))})`);
  }
  let tokens: string[];
  if (request.override !== undefined) {
    tokens = splitScope(request.override);
    if (tokens.length === 0)
      throw new ConfigurationError('scope override must not be empty or only whitespace');
    assertScopeTokens(tokens, 'scope override');
  } else {
    for (const type of request.resourceTypes) {
      if (!RESOURCE_TYPE.test(type)) {
        throw new ConfigurationError(
          `resource type ${JSON.stringify(type.slice(0, 64))} is not a FHIR resource type name`,
        );
      }
    }
    tokens =
      request.resourceTypes.length === 0
        ? [systemScope('*', syntax, casing)]
        : request.resourceTypes.map((type) => systemScope(type, syntax, casing));
  }
  const extra = (request.extraScopes ?? []).flatMap(splitScope);
  assertScopeTokens(extra, 'extraScopes');
  return [...new Set([...tokens, ...extra])].join(' ');
}

/** Requested scope tokens the server did not grant; worth a warning, since the export may then fail per type. */
export function scopesNotGranted(requested: string, granted: string): string[] {
  const grantedTokens = new Set(splitScope(granted));
  return splitScope(requested).filter((token) => !grantedTokens.has(token));
}
