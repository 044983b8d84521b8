import { describe, expect, it } from 'vitest';
import { parseSourceSettings } from '../../../lambdas/config.js';
import {
  assertManifestFilesMayHaveToken,
  assertTokenMayGoTo,
  tokenMayGoTo,
  trustedOriginProblem,
} from '../../../lambdas/core/origins.js';
import { ConfigurationError } from '../../../lambdas/errors.js';

const audience = {
  fhirBaseUrl: 'https://ehr.example.org/fhir/R4',
  trustedOrigins: ['https://files.example.org', 'https://status.example.org:8443'],
};

describe('tokenMayGoTo', () => {
  it.each([
    ['the FHIR base URL itself', 'https://ehr.example.org/fhir/R4/$export', true],
    ['another path on the FHIR origin', 'https://ehr.example.org/bulk/status/1?x=1', true],
    ['the FHIR origin in upper case', 'HTTPS://EHR.Example.ORG/status', true],
    ['the FHIR origin with its default port written out', 'https://ehr.example.org:443/status', true],
    ['a trusted origin', 'https://files.example.org/a.ndjson?X-Amz-Signature=s', true],
    ['a trusted origin on its own port', 'https://status.example.org:8443/jobs/1', true],
    ['a trusted host on another port', 'https://status.example.org/jobs/1', false],
    ['the FHIR host on another port', 'https://ehr.example.org:8443/status', false],
    ['the FHIR host over http', 'http://ehr.example.org/status', false],
    ['a subdomain of the FHIR host', 'https://files.ehr.example.org/a.ndjson', false],
    ['a host that merely starts like it', 'https://ehr.example.org.evil.test/status', false],
    ['an opaque origin', 'data:text/plain,hello', false],
    ['no URL at all', 'not a url', false],
  ])('%s: %s → %s', (_name, url, expected) => {
    expect(tokenMayGoTo(url, audience)).toBe(expected);
  });

  it('treats a trusted origin written with a trailing slash or upper case as the origin', () => {
    // Prepare
    const written = {
      fhirBaseUrl: 'https://ehr.example.org',
      trustedOrigins: ['HTTPS://Files.Example.org/'],
    };
    // Act, Assess
    expect(tokenMayGoTo('https://files.example.org/x', written)).toBe(true);
  });

  it('refuses with the role, the origin and path (never the query) and the fix', () => {
    // Act
    const refusing = () =>
      assertTokenMayGoTo('https://other.example.net/jobs/7?sig=secret', audience, 'the status URL');
    // Assess
    expect(refusing).toThrow(
      new ConfigurationError(
        'the status URL https://other.example.net/jobs/7 is on origin https://other.example.net, which may not ' +
          "receive the access token (it goes only to the FHIR server's origin https://ehr.example.org and the " +
          'trustedOrigins https://files.example.org, https://status.example.org:8443); if that host belongs to the ' +
          'FHIR server, add "https://other.example.net" to the source\'s trustedOrigins',
      ),
    );
  });
});

describe('assertManifestFilesMayHaveToken', () => {
  const files = (...urls: string[]) => urls.map((url) => ({ url }));

  it('lets a manifest whose files need no token name any origin', () => {
    expect(() =>
      assertManifestFilesMayHaveToken(
        { requiresAccessToken: false, files: files('https://s3.example.com/a?sig=1') },
        audience,
      ),
    ).not.toThrow();
  });

  it('refuses a manifest with token-needing files elsewhere, counting them and naming their origins', () => {
    // Act
    const refusing = () =>
      assertManifestFilesMayHaveToken(
        {
          requiresAccessToken: true,
          files: files(
            'https://files.example.org/1.ndjson',
            'https://cdn.example.com/2.ndjson?sig=secret',
            'https://cdn.example.com/3.ndjson',
          ),
        },
        audience,
      );
    // Assess
    expect(refusing).toThrow(ConfigurationError);
    expect(refusing).toThrow(
      /^2 of the manifest's 3 files need the access token \(requiresAccessToken: true\) but are on origin https:\/\/cdn\.example\.com; first: the file \(the manifest says requiresAccessToken: true\) https:\/\/cdn\.example\.com\/2\.ndjson is on origin/,
    );
    expect(refusing).not.toThrow(/secret/);
  });
});

describe('trustedOrigins', () => {
  const source = (trustedOrigins: unknown, allowInsecureHttp = false) => ({
    id: 'vendor',
    fhirBaseUrl: 'https://ehr.example.org/fhir',
    trustedOrigins,
    allowInsecureHttp,
  });

  it('defaults to none', () => {
    expect(
      parseSourceSettings({ id: 'vendor', fhirBaseUrl: 'https://ehr.example.org/fhir' }).trustedOrigins,
    ).toEqual([]);
  });

  it.each([
    ['https://files.example.org', false],
    ['https://files.example.org/', false],
    ['https://files.example.org:8443', false],
    ['http://localhost:8080', true],
    ['http://127.0.0.1:9', true],
  ])('accepts the origin %s', (origin, allowInsecureHttp) => {
    expect(trustedOriginProblem(origin, allowInsecureHttp)).toBeUndefined();
    expect(parseSourceSettings(source([origin], allowInsecureHttp)).trustedOrigins).toEqual([origin]);
  });

  it.each([
    [
      'https://files.example.org/bulk',
      'is not an origin: expected only scheme, host and port, such as https://files.example.org',
    ],
    [
      'https://files.example.org?x=1',
      'is not an origin: expected only scheme, host and port, such as https://files.example.org',
    ],
    ['https://user:pw@files.example.org', 'must not carry credentials'],
    ['files.example.org', 'is not an origin such as https://files.example.com'],
    ['ftp://files.example.org', 'uses the ftp: scheme; expected https://host[:port]'],
    ['http://files.example.org', 'uses http: on a non-loopback host; only https is allowed'],
    ['http://localhost:8080', 'uses http:, allowed only for loopback hosts with allowInsecureHttp: true'],
  ])('refuses %s: %s', (origin, problem) => {
    expect(trustedOriginProblem(origin, false)).toBe(problem);
    expect(() => parseSourceSettings(source(['https://ok.example.org', origin]))).toThrow(
      `source.trustedOrigins[1] ${problem}`,
    );
  });
});
