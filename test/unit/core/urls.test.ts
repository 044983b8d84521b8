import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkFetchableUrl, isLoopbackHost } from '../../../lambdas/core/urls.js';

describe('isLoopbackHost', () => {
  it.each([
    ['localhost', true],
    ['LOCALHOST', true],
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['[::1]', true],
    ['localhost.', false],
    ['localhost.example.org', false],
    ['127.0.0.1.nip.io', false],
    ['128.0.0.1', false],
    ['0.0.0.0', false],
    ['10.0.0.1', false],
    ['[::ffff:7f00:1]', false],
    ['example.org', false],
    ['', false],
  ])('%j → %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});

describe('checkFetchableUrl', () => {
  it.each([
    ['https://ehr.example.org/fhir', false, 'https://ehr.example.org/fhir'],
    ['HTTPS://EHR.example.org:443/a b', false, 'https://ehr.example.org/a%20b'],
    ['https://ehr.example.org/x?X-Amz-Signature=abc', false, 'https://ehr.example.org/x?X-Amz-Signature=abc'],
    ['http://localhost:8080/fhir', true, 'http://localhost:8080/fhir'],
    ['http://127.0.0.1:4568/bucket/key', true, 'http://127.0.0.1:4568/bucket/key'],
    ['http://127.1:9000/x', true, 'http://127.0.0.1:9000/x'],
    ['http://[::1]:8080/fhir', true, 'http://[::1]:8080/fhir'],
  ])('accepts %s (allowInsecureHttp %s)', (raw, allowInsecureHttp, href) => {
    // Act
    const check = checkFetchableUrl(raw, allowInsecureHttp);
    // Assess
    expect(check.ok).toBe(true);
    expect(check.ok && check.url.href).toBe(href);
  });

  it.each([
    [undefined, true, 'is not a non-empty string'],
    [42, true, 'is not a non-empty string'],
    ['', true, 'is not a non-empty string'],
    [{ href: 'https://x' }, true, 'is not a non-empty string'],
    ['/relative/path', true, 'is not an absolute URL'],
    ['ehr.example.org/fhir', true, 'is not an absolute URL'],
    ['https://[::1', true, 'is not an absolute URL'],
    ['https://user:pass@ehr.example.org/', true, 'must not carry credentials'],
    ['https://user@ehr.example.org/', true, 'must not carry credentials'],
    ['https://:pass@ehr.example.org/', true, 'must not carry credentials'],
    ['http://user:pass@localhost/', true, 'must not carry credentials'],
    ['http://ehr.example.org/fhir', true, 'uses http: on a non-loopback host; only https is allowed'],
    ['http://10.0.0.1/fhir', true, 'uses http: on a non-loopback host; only https is allowed'],
    ['http://localhost.evil.example/', true, 'uses http: on a non-loopback host; only https is allowed'],
    [
      'http://localhost:8080/fhir',
      false,
      'uses http:, allowed only for loopback hosts with allowInsecureHttp: true',
    ],
    ['file:///etc/passwd', true, 'uses the file: scheme; only https is allowed'],
    ['javascript:alert(1)', true, 'uses the javascript: scheme; only https is allowed'],
    ['ftp://files.example.org/x', true, 'uses the ftp: scheme; only https is allowed'],
    ['data:text/plain,hello', true, 'uses the data: scheme; only https is allowed'],
    ['ws://localhost/', true, 'uses the ws: scheme; only https is allowed'],
  ])('rejects %j (allowInsecureHttp %s)', (raw, allowInsecureHttp, reason) => {
    expect(checkFetchableUrl(raw, allowInsecureHttp)).toStrictEqual({ ok: false, reason });
  });

  it('never throws and only accepts https or loopback http', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.webUrl({ withQueryParameters: true }), fc.anything()),
        fc.boolean(),
        (raw, insecure) => {
          // Act
          const check = checkFetchableUrl(raw, insecure);
          // Assess
          if (check.ok) {
            expect(check.url.username + check.url.password).toBe('');
            const secure = check.url.protocol === 'https:';
            const localHttp =
              insecure && check.url.protocol === 'http:' && isLoopbackHost(check.url.hostname);
            expect(secure || localHttp).toBe(true);
          } else {
            expect(check.reason).not.toBe('');
          }
        },
      ),
    );
  });
});
