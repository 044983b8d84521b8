import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { oneLine, summarizeOperationOutcome } from '../../../lambdas/core/operation-outcome.js';

const outcome = (issue: unknown) => JSON.stringify({ resourceType: 'OperationOutcome', issue });

describe('summarizeOperationOutcome', () => {
  it.each([
    [
      'one issue with diagnostics',
      outcome([{ severity: 'error', code: 'transient', diagnostics: 'database busy' }]),
      { codes: ['transient'], text: 'error transient database busy' },
    ],
    [
      'details.text when there are no diagnostics',
      outcome([{ severity: 'error', code: 'not-found', details: { text: 'Group g1 is unknown' } }]),
      { codes: ['not-found'], text: 'error not-found Group g1 is unknown' },
    ],
    [
      'diagnostics over details.text',
      outcome([{ severity: 'error', code: 'invalid', diagnostics: 'diag', details: { text: 'details' } }]),
      { codes: ['invalid'], text: 'error invalid diag' },
    ],
    [
      'several issues joined with semicolons',
      outcome([
        { severity: 'error', code: 'exception', diagnostics: 'boom' },
        { severity: 'warning', code: 'informational' },
        { code: 'transient' },
      ]),
      {
        codes: ['exception', 'informational', 'transient'],
        text: 'error exception boom; warning informational; transient',
      },
    ],
    [
      'multi-line diagnostics',
      outcome([
        { severity: 'fatal', code: 'exception', diagnostics: 'java.lang.NPE\n\tat Foo.bar(Foo.java:1)\r\n' },
      ]),
      { codes: ['exception'], text: 'fatal exception java.lang.NPE at Foo.bar(Foo.java:1)' },
    ],
    [
      'issues that are not objects or have wrongly typed fields',
      outcome([null, 'x', 7, { severity: 1, code: ['transient'], diagnostics: {} }, { code: 'processing' }]),
      { codes: ['processing'], text: 'processing' },
    ],
    [
      'no issue array',
      JSON.stringify({ resourceType: 'OperationOutcome' }),
      { codes: [], text: 'OperationOutcome without issues' },
    ],
    ['an empty issue array', outcome([]), { codes: [], text: 'OperationOutcome without issues' }],
    [
      'issue not an array',
      outcome({ code: 'transient' }),
      { codes: [], text: 'OperationOutcome without issues' },
    ],
    ['only empty issues', outcome([{}, {}]), { codes: [], text: 'OperationOutcome without issues' }],
  ])('summarizes %s', (_, body, expected) => {
    expect(summarizeOperationOutcome(body)).toStrictEqual(expected);
  });

  it('reads at most 20 issues', () => {
    // Prepare
    const issues = Array.from({ length: 25 }, (_, index) => ({ code: `c${index}` }));
    // Act
    const summary = summarizeOperationOutcome(outcome(issues));
    // Assess
    expect(summary?.codes).toStrictEqual(Array.from({ length: 20 }, (_, index) => `c${index}`));
  });

  it('caps the text at 300 characters', () => {
    // Act
    const summary = summarizeOperationOutcome(
      outcome([{ severity: 'error', code: 'exception', diagnostics: 'x'.repeat(1_000_000) }]),
    );
    // Assess
    expect(summary).toStrictEqual({ codes: ['exception'], text: `error exception ${'x'.repeat(283)}…` });
    expect(summary?.text).toHaveLength(300);
  });

  it.each([
    ['undefined', undefined],
    ['empty', ''],
    ['blank', ' \n\t '],
    ['HTML', '<html><body><h1>502 Bad Gateway</h1></body></html>'],
    ['truncated JSON', '{"resourceType":"OperationOutcome","issue":[{"code":"tra'],
    ['JSON null', 'null'],
    ['a JSON string', '"OperationOutcome"'],
    ['a JSON array', '[{"resourceType":"OperationOutcome"}]'],
    ['another resource', '{"resourceType":"Bundle","issue":[{"code":"transient"}]}'],
    ['no resourceType', '{"issue":[{"code":"transient"}]}'],
  ])('returns undefined for %s', (_, body) => {
    expect(summarizeOperationOutcome(body)).toBeUndefined();
  });

  it('never throws on arbitrary strings and always yields one short line', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 2_000 }), (body) => {
        // Act
        const summary = summarizeOperationOutcome(body);
        // Assess
        if (summary !== undefined) {
          expect(summary.text.length).toBeLessThanOrEqual(300);
          expect(summary.text).not.toMatch(/[\r\n]/);
        }
      }),
    );
  });

  it('never throws on arbitrary OperationOutcome-shaped JSON and keeps every string code', () => {
    // Prepare
    const issue = fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          severity: fc.oneof(fc.string(), fc.jsonValue()),
          code: fc.oneof(fc.constantFrom('transient', 'exception', 'invalid'), fc.jsonValue()),
          diagnostics: fc.oneof(fc.string({ unit: 'binary', maxLength: 500 }), fc.jsonValue()),
          details: fc.oneof(fc.record({ text: fc.oneof(fc.string(), fc.jsonValue()) }), fc.jsonValue()),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(fc.array(issue, { maxLength: 30 }), (issues) => {
        // Act
        const summary = summarizeOperationOutcome(outcome(issues));
        // Assess
        const expectedCodes = issues
          .slice(0, 20)
          .filter(
            (item): item is { code: string } =>
              item !== null &&
              typeof item === 'object' &&
              typeof (item as { code?: unknown }).code === 'string',
          )
          .map((item) => item.code);
        expect(summary?.codes).toStrictEqual(expectedCodes);
        expect(summary?.text.length).toBeGreaterThan(0);
        expect(summary?.text.length).toBeLessThanOrEqual(300);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting none survive
        expect(summary?.text).not.toMatch(/[\u0000-\u001f\u007f]/);
      }),
    );
  });
});

describe('oneLine', () => {
  it.each([
    ['plain', 'plain'],
    ['  padded  ', 'padded'],
    ['a\r\nb\tc', 'a b c'],
    ['bell\u0007 and del\u007f', 'bell and del'],
    ['many     spaces', 'many spaces'],
    ['\u001b[31mred\u001b[0m', '[31mred [0m'],
    ['', ''],
  ])('%j → %j', (text, line) => {
    expect(oneLine(text)).toBe(line);
  });

  it.each([
    [10, 'x'.repeat(10), 'x'.repeat(10)],
    [10, 'x'.repeat(11), `${'x'.repeat(9)}…`],
    [300, 'y'.repeat(301), `${'y'.repeat(299)}…`],
  ])('caps at %d', (max, text, line) => {
    expect(oneLine(text, max)).toBe(line);
  });

  it('defaults to 300 characters', () => {
    expect(oneLine('z'.repeat(10_000))).toBe(`${'z'.repeat(299)}…`);
  });

  it('always yields at most max characters without control characters', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 1_000 }),
        fc.integer({ min: 1, max: 400 }),
        (text, max) => {
          // Act
          const line = oneLine(text, max);
          // Assess
          expect(line.length).toBeLessThanOrEqual(max);
          // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting none survive
          expect(line).not.toMatch(/[\u0000-\u001f\u007f]/);
          expect(line).toBe(line.trim());
        },
      ),
    );
  });
});

describe('oneLine at the edges of Unicode', () => {
  it('never cuts a surrogate pair in half', () => {
    const text = oneLine(`${'a'.repeat(298)}😀bb`, 300);
    expect(Buffer.from(text, 'utf8').toString('utf8')).toBe(text);
    expect(text.endsWith('…')).toBe(true);
    expect(/[\ud800-\udbff](?![\udc00-\udfff])/.test(text)).toBe(false);
  });

  it('strips C1 control characters too', () => {
    expect(oneLine('x\u0085y\u009b31mz')).toBe('x y 31mz');
  });
});

describe('summarizeOperationOutcome with blank issues', () => {
  it('never returns an empty summary (found by the property above: severity " ")', () => {
    const summary = summarizeOperationOutcome(
      JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: ' ' }] }),
    );
    expect(summary).toEqual({ codes: [], text: 'OperationOutcome without issues' });
  });
});
