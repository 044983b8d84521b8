import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HttpResponseView } from '../../../lambdas/core/kickoff.js';
import { interpretStatusResponse } from '../../../lambdas/core/status.js';
import {
  AccessTokenRejectedError,
  ExportJobGoneError,
  ExportRequestRejectedError,
} from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

const NOW = new Date('2026-11-26T12:00:00Z');

function errorShape(error: Error): { name: string; code: unknown; message: string } {
  return { name: error.name, code: (error as { code?: unknown }).code, message: error.message };
}

const respond = (status: number, headers: Record<string, string> = {}, body?: string): HttpResponseView => ({
  status,
  headers,
  ...(body === undefined ? {} : { body }),
});

const outcomeBody = (...issues: Record<string, unknown>[]) =>
  JSON.stringify({ resourceType: 'OperationOutcome', issue: issues });

describe('interpretStatusResponse: running', () => {
  it.each([
    ['nothing', {}, { outcome: 'in-progress' }],
    ['X-Progress', { 'x-progress': '42% complete' }, { outcome: 'in-progress', progress: '42% complete' }],
    ['Retry-After seconds', { 'retry-after': '15' }, { outcome: 'in-progress', retryAfterSeconds: 15 }],
    [
      'Retry-After HTTP-date',
      { 'retry-after': 'Thu, 26 Nov 2026 12:05:00 GMT' },
      { outcome: 'in-progress', retryAfterSeconds: 300 },
    ],
    [
      'both',
      { 'x-progress': 'Patient: 3 of 7 files', 'retry-after': '60' },
      { outcome: 'in-progress', progress: 'Patient: 3 of 7 files', retryAfterSeconds: 60 },
    ],
    ['a malformed Retry-After', { 'retry-after': '-5' }, { outcome: 'in-progress' }],
    ['an empty X-Progress', { 'x-progress': '' }, { outcome: 'in-progress' }],
  ])('reads 202 with %s', (_, headers, expected) => {
    // Act
    const outcome = interpretStatusResponse(respond(202, headers), NOW);
    // Assess
    expect(outcome).toStrictEqual(expected);
  });

  it('caps a 10,000 character X-Progress to 100 characters', () => {
    // Act
    const outcome = interpretStatusResponse(respond(202, { 'x-progress': 'p'.repeat(10_000) }), NOW);
    // Assess
    expect(outcome).toStrictEqual({ outcome: 'in-progress', progress: `${'p'.repeat(99)}…` });
  });

  it('flattens control characters in X-Progress to single spaces', () => {
    // Act
    const outcome = interpretStatusResponse(
      respond(202, { 'x-progress': '\u001b[31m50%\r\n\tdone\u0000\u007f ' }),
      NOW,
    );
    // Assess
    expect(outcome).toStrictEqual({ outcome: 'in-progress', progress: '[31m50% done' });
  });

  it('always reports X-Progress as one line of at most 100 characters', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 2_000, unit: 'binary' }), (progress) => {
        // Act
        const outcome = interpretStatusResponse(respond(202, { 'x-progress': progress }), NOW);
        // Assess
        expect(outcome.outcome).toBe('in-progress');
        // Progress of only blanks and control characters is no progress at all.
        const text = (outcome as { progress?: string }).progress ?? '';
        // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters oneLine drops
        if (/[^\s\u0000-\u001f\u007f-\u009f]/.test(progress)) expect(text).not.toBe('');
        expect(text.length).toBeLessThanOrEqual(100);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting none survive
        expect(text).not.toMatch(/[\u0000-\u001f\u007f]/);
      }),
    );
  });
});

describe('interpretStatusResponse: complete', () => {
  it('returns the parsed manifest and Expires', () => {
    // Prepare
    const manifest = {
      transactionTime: '2026-11-26T11:59:00Z',
      request: 'https://ehr.example.org/fhir/$export',
      requiresAccessToken: true,
      output: [{ type: 'Patient', url: 'https://files.example.org/1.ndjson' }],
      error: [],
    };
    // Act
    const outcome = interpretStatusResponse(
      respond(200, { expires: 'Fri, 27 Nov 2026 12:00:00 GMT' }, JSON.stringify(manifest)),
      NOW,
    );
    // Assess
    expect(outcome).toStrictEqual({
      outcome: 'complete',
      manifestBody: manifest,
      expires: 'Fri, 27 Nov 2026 12:00:00 GMT',
    });
  });

  it('returns any JSON without judging it (the manifest parser does)', () => {
    // Act
    const outcome = interpretStatusResponse(respond(200, {}, '[1,2]'), NOW);
    // Assess
    expect(outcome).toStrictEqual({ outcome: 'complete', manifestBody: [1, 2] });
  });

  it.each([
    ['an HTML page', '<html><body>OK</body></html>'],
    ['truncated JSON', '{"transactionTime": "2026'],
    ['an empty body', ''],
    ['no body', undefined],
  ])('fails 200 with %s', (_, body) => {
    // Act
    const error = thrown(() => interpretStatusResponse(respond(200, {}, body), NOW));
    // Assess
    expect(error).toBeInstanceOf(ExportRequestRejectedError);
    expect(errorShape(error)).toStrictEqual({
      name: 'ExportRequestRejectedError',
      code: 'ERR_EXPORT_REJECTED',
      message: 'status answered 200 but the completion manifest is not JSON',
    });
  });
});

describe('interpretStatusResponse: retry', () => {
  it.each([
    [429, {}, undefined, { outcome: 'too-fast', reason: 'status answered 429' }],
    [
      429,
      { 'retry-after': '600' },
      outcomeBody({ severity: 'error', code: 'throttled', diagnostics: 'slow down' }),
      {
        outcome: 'too-fast',
        retryAfterSeconds: 600,
        reason: 'status answered 429: error throttled slow down',
      },
    ],
    [500, {}, undefined, { outcome: 'transient', reason: 'status answered 500' }],
    [502, {}, '<html>Bad Gateway</html>', { outcome: 'transient', reason: 'status answered 502' }],
    [
      503,
      { 'retry-after': '30' },
      '',
      { outcome: 'transient', retryAfterSeconds: 30, reason: 'status answered 503' },
    ],
    [504, {}, '{"resourceType":"Bundle"}', { outcome: 'transient', reason: 'status answered 504' }],
    [
      500,
      {},
      outcomeBody({ severity: 'error', code: 'transient', diagnostics: 'try again later' }),
      { outcome: 'transient', reason: 'status answered 500: error transient try again later' },
    ],
    [
      400,
      {},
      outcomeBody({ severity: 'error', code: 'transient', diagnostics: 'lock timeout' }),
      { outcome: 'transient', reason: 'status answered 400: error transient lock timeout' },
    ],
  ] as const)('reads %d %j as worth retrying', (status, headers, body, expected) => {
    // Act
    const outcome = interpretStatusResponse(respond(status, headers, body), NOW);
    // Assess
    expect(outcome).toStrictEqual(expected);
  });
});

describe('interpretStatusResponse: failures', () => {
  it.each([
    [401, undefined, 'status answered 401'],
    [
      401,
      outcomeBody({ severity: 'error', code: 'security', diagnostics: 'expired' }),
      'status answered 401: error security expired',
    ],
  ])('fails %d with AccessTokenRejectedError (body %j)', (status, body, message) => {
    // Act
    const error = thrown(() => interpretStatusResponse(respond(status, {}, body), NOW));
    // Assess
    expect(error).toBeInstanceOf(AccessTokenRejectedError);
    expect(errorShape(error)).toStrictEqual({
      name: 'AccessTokenRejectedError',
      code: 'ERR_ACCESS_TOKEN_REJECTED',
      message,
    });
  });

  it.each([
    [404, undefined, 'status answered 404: the export job expired or was cancelled'],
    [410, '<html>Gone</html>', 'status answered 410: the export job expired or was cancelled'],
    [
      404,
      outcomeBody({ severity: 'error', code: 'not-found', diagnostics: 'job 42 was deleted' }),
      'status answered 404: the export job expired or was cancelled: error not-found job 42 was deleted',
    ],
  ])('fails %d with ExportJobGoneError (body %j)', (status, body, message) => {
    // Act
    const error = thrown(() => interpretStatusResponse(respond(status, {}, body), NOW));
    // Assess
    expect(error).toBeInstanceOf(ExportJobGoneError);
    expect(errorShape(error)).toStrictEqual({
      name: 'ExportJobGoneError',
      code: 'ERR_EXPORT_JOB_GONE',
      message,
    });
  });

  it.each([
    [
      500,
      outcomeBody({ severity: 'error', code: 'exception', diagnostics: 'export failed: disk full' }),
      'the export job failed: status answered 500: error exception export failed: disk full',
    ],
    [
      503,
      outcomeBody({ severity: 'fatal', code: 'exception' }),
      'the export job failed: status answered 503: fatal exception',
    ],
    [
      400,
      outcomeBody({ severity: 'error', code: 'invalid', details: { text: 'bad _typeFilter' } }),
      'the export job failed: status answered 400: error invalid bad _typeFilter',
    ],
    [400, undefined, 'the export job failed: status answered 400 with no OperationOutcome'],
    [403, '<html>Forbidden</html>', 'the export job failed: status answered 403 with no OperationOutcome'],
    [
      500,
      JSON.stringify({ resourceType: 'OperationOutcome' }),
      'the export job failed: status answered 500: OperationOutcome without issues',
    ],
    [301, undefined, 'the export job failed: status answered 301 with no OperationOutcome'],
  ])('fails %d for good (body %j)', (status, body, message) => {
    // Act
    const error = thrown(() => interpretStatusResponse(respond(status, {}, body), NOW));
    // Assess
    expect(error).toBeInstanceOf(ExportRequestRejectedError);
    expect(errorShape(error)).toStrictEqual({
      name: 'ExportRequestRejectedError',
      code: 'ERR_EXPORT_REJECTED',
      message,
    });
  });
});
