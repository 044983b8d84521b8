/**
 * URL policy for everything we fetch. PHI and bearer tokens travel over these
 * connections, so only https is acceptable; plain http is allowed solely for
 * loopback addresses, and only when the source explicitly opted into local
 * mode (`allowInsecureHttp`). Other schemes (`file:`, `javascript:`, `ftp:`)
 * are never followed, whatever a manifest says.
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host === '::1') return true;
  return /^127(\.\d{1,3}){3}$/.test(host);
}

export type UrlCheck = { ok: true; url: URL } | { ok: false; reason: string };

export function checkFetchableUrl(raw: unknown, allowInsecureHttp: boolean): UrlCheck {
  if (typeof raw !== 'string' || raw === '') return { ok: false, reason: 'is not a non-empty string' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'is not an absolute URL' };
  }
  if (url.username || url.password) return { ok: false, reason: 'must not carry credentials' };
  if (url.protocol === 'https:') return { ok: true, url };
  if (url.protocol === 'http:') {
    if (!isLoopbackHost(url.hostname)) {
      return { ok: false, reason: 'uses http: on a non-loopback host; only https is allowed' };
    }
    if (!allowInsecureHttp) {
      return {
        ok: false,
        reason: 'uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
      };
    }
    return { ok: true, url };
  }
  return { ok: false, reason: `uses the ${url.protocol} scheme; only https is allowed` };
}
