import { ConfigurationError } from '../errors.js';
import { isLoopbackHost } from './urls.js';

/**
 * Where the bearer token may go. A Bulk Data server names URLs we then call
 * (the kick-off's Content-Location, a manifest's `link` to its next page, its
 * file URLs); the token is ours to protect, so it goes only to the FHIR base
 * URL's origin and to the origins the source lists as `trustedOrigins` (a
 * vendor's separate file or status host). Origins are WHATWG URL origins:
 * scheme, host and port, with default ports and case normalized.
 */
export interface TokenAudience {
  readonly fhirBaseUrl: string;
  readonly trustedOrigins: readonly string[];
}

/** The origins the token may go to, normalized: the FHIR server's first. */
export function tokenOrigins(audience: TokenAudience): readonly string[] {
  return [new URL(audience.fhirBaseUrl).origin, ...audience.trustedOrigins.map((o) => new URL(o).origin)];
}

export function tokenMayGoTo(url: string | URL, audience: TokenAudience): boolean {
  return isTrusted(url, new Set(tokenOrigins(audience)));
}

function isTrusted(url: string | URL, trusted: ReadonlySet<string>): boolean {
  let origin: string;
  try {
    origin = new URL(url).origin;
  } catch {
    return false;
  }
  // An opaque origin ('null', e.g. data: or file:) is no server of the source's.
  return origin !== 'null' && trusted.has(origin);
}

/**
 * Refuses a URL the token may not go to. `role` says what the URL is to the
 * export ("the status URL (the kick-off's Content-Location)"); the message
 * names the origin and path only: a query may hold a presigned credential.
 */
export function assertTokenMayGoTo(url: string | URL, audience: TokenAudience, role: string): void {
  if (tokenMayGoTo(url, audience)) return;
  throw new ConfigurationError(untrustedOriginMessage(url, audience, role));
}

export function untrustedOriginMessage(url: string | URL, audience: TokenAudience, role: string): string {
  const target = new URL(url);
  const trusted = tokenOrigins(audience);
  return (
    `${role} ${target.origin}${target.pathname} is on origin ${target.origin}, which may not receive the access token ` +
    `(it goes only to the FHIR server's origin ${trusted[0]}` +
    `${trusted.length > 1 ? ` and the trustedOrigins ${trusted.slice(1).join(', ')}` : ''}); ` +
    `if that host belongs to the FHIR server, add "${target.origin}" to the source's trustedOrigins`
  );
}

/** The role of a file URL in the refusal's message. */
export const FILE_NEEDING_TOKEN = 'the file (the manifest says requiresAccessToken: true)';

/**
 * A manifest whose files need the token, checked before any is downloaded: one file on an
 * origin the token may not go to fails the export now, not after the others have landed.
 */
export function assertManifestFilesMayHaveToken(
  manifest: { readonly requiresAccessToken: boolean; readonly files: readonly { readonly url: string }[] },
  audience: TokenAudience,
): void {
  if (!manifest.requiresAccessToken) return;
  // Once, not per file: a manifest may list 200,000 files.
  const trusted = new Set(tokenOrigins(audience));
  const elsewhere = manifest.files.filter((file) => !isTrusted(file.url, trusted));
  if (elsewhere.length === 0) return;
  const origins = [...new Set(elsewhere.map((file) => new URL(file.url).origin))];
  throw new ConfigurationError(
    `${elsewhere.length} of the manifest's ${manifest.files.length} files need the access token (requiresAccessToken: true) ` +
      `but are on ${origins.length === 1 ? 'origin' : 'origins'} ${origins.join(', ')}; first: ` +
      untrustedOriginMessage(elsewhere[0]!.url, audience, FILE_NEEDING_TOKEN),
  );
}

/**
 * A `trustedOrigins` entry: an origin and nothing else (`https://files.example.com` or
 * `https://host:8443`, no path, query or credentials); http only for a loopback host with
 * allowInsecureHttp, like every URL we fetch. Returns why not, or undefined when it is one.
 */
export function trustedOriginProblem(raw: string, allowInsecureHttp: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'is not an origin such as https://files.example.com';
  }
  if (url.username || url.password) return 'must not carry credentials';
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return `uses the ${url.protocol} scheme; expected https://host[:port]`;
  // Scheme and authority, at most a trailing slash: a path, query or fragment is no origin.
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]+\/?$/i.test(raw))
    return `is not an origin: expected only scheme, host and port, such as ${url.origin}`;
  if (url.protocol === 'http:') {
    if (!isLoopbackHost(url.hostname)) return 'uses http: on a non-loopback host; only https is allowed';
    if (!allowInsecureHttp) return 'uses http:, allowed only for loopback hosts with allowInsecureHttp: true';
  }
  return undefined;
}
