import { describe, expect, it } from 'vitest';
import {
  DIAGNOSTICS_MAX,
  describeServerFileErrors,
  fileNameOf,
  isFailingSeverity,
  type OutputFileName,
  reasonsFor,
  ServerFileErrorTriager,
} from '../../../lambdas/core/server-file-errors.js';

const outcome = (...issue: unknown[]) => JSON.stringify({ resourceType: 'OperationOutcome', issue });

// Named as the SMART reference server names them: <n>.<Type>.ndjson at the end of the URL.
const OUTPUTS: OutputFileName[] = [
  { index: 0, type: 'AllergyIntolerance', name: '1.AllergyIntolerance.ndjson' },
  { index: 1, type: 'AllergyIntolerance', name: '2.AllergyIntolerance.ndjson' },
  { index: 2, type: 'Condition', name: '1.Condition.ndjson' },
  { index: 3, type: 'Observation', name: 'b3f0c9e2-5d1c-4a7e' },
];

function triage(lines: readonly string[], outputs = OUTPUTS, types: string[] = ['Patient']) {
  const triager = new ServerFileErrorTriager(outputs, types);
  for (const line of lines) triager.addLine(line);
  return triager.result();
}

describe('server file error triage', () => {
  it('counts fatal, error and issues without a severity as failures; warning and information are not', () => {
    expect([
      isFailingSeverity('fatal'),
      isFailingSeverity('error'),
      isFailingSeverity(undefined),
      isFailingSeverity('bogus'),
      isFailingSeverity('warning'),
      isFailingSeverity('information'),
    ]).toEqual([true, true, true, true, false, false]);

    const result = triage([
      outcome({
        severity: 'fatal',
        code: 'exception',
        diagnostics: 'Failed to export 2.AllergyIntolerance.ndjson',
      }),
      outcome(
        { severity: 'information', code: 'informational', diagnostics: 'export finished' },
        { severity: 'warning', code: 'not-supported', diagnostics: 'ignored _elements' },
      ),
      outcome({ code: 'exception', diagnostics: 'no severity given' }),
    ]);

    expect(result.issues).toEqual({ fatal: 1, error: 0, warning: 1, information: 1, other: 1 });
    expect(result.failures).toBe(2);
    expect(result.failing.map((issue) => issue.severity)).toEqual(['fatal', 'unknown']);
  });

  it("maps the reference server's 'Failed to export <file>' to the file whose URL ends with that name", () => {
    const result = triage([
      outcome({
        severity: 'error',
        code: 'exception',
        diagnostics: 'Failed to export 2.AllergyIntolerance.ndjson',
      }),
    ]);

    expect(result.byFile).toEqual({ '1': ['error exception: Failed to export 2.AllergyIntolerance.ndjson'] });
    expect(result.byType).toEqual({});
    expect(result.exportWide).toEqual([]);
    expect(reasonsFor(result, { index: 0, type: 'AllergyIntolerance' })).toEqual([]);
  });

  it('finds a file named by a URL, in expression or details.text, percent-encoded or not', () => {
    const result = triage([
      outcome({
        severity: 'error',
        code: 'exception',
        diagnostics: 'write failed for https://files.example.org/x/b3f0c9e2-5d1c-4a7e?sig=SECRET',
      }),
      outcome({ severity: 'error', code: 'processing', expression: ['1.Condition.ndjson'] }),
      outcome({
        severity: 'error',
        code: 'processing',
        details: { text: 'lost 1%2EAllergyIntolerance.ndjson' },
      }),
    ]);

    expect(Object.keys(result.byFile).sort()).toEqual(['0', '2', '3']);
    // The URL (a presigned one is a credential) is never kept, only the words around it.
    expect(result.byFile['3']).toEqual(['error exception: write failed for <url>']);
    expect(JSON.stringify(result)).not.toContain('SECRET');
  });

  it('falls back to the type an issue names, then to the whole export', () => {
    const result = triage([
      outcome({
        severity: 'error',
        code: 'processing',
        diagnostics: 'some Condition resources could not be exported',
      }),
      outcome({ severity: 'error', code: 'processing', diagnostics: 'Patient export timed out' }),
      outcome({ severity: 'fatal', code: 'exception', diagnostics: 'the database went away' }),
    ]);

    expect(result.byType).toEqual({
      Condition: ['error processing: some Condition resources could not be exported'],
      Patient: ['error processing: Patient export timed out'],
    });
    expect(result.exportWide).toEqual(['fatal exception: the database went away']);
    expect(reasonsFor(result, { index: 2, type: 'Condition' })).toEqual([
      'error processing: some Condition resources could not be exported',
      'fatal exception: the database went away',
    ]);
    expect(reasonsFor(result, { index: 0, type: 'AllergyIntolerance' })).toEqual([
      'fatal exception: the database went away',
    ]);
  });

  it('reads the type from a file name the manifest did not list (a server that leaves failed files out of output)', () => {
    const result = triage([
      outcome({ severity: 'error', code: 'exception', diagnostics: 'Failed to export 3.Condition.ndjson' }),
    ]);

    expect(result.byFile).toEqual({});
    expect(result.byType).toEqual({ Condition: ['error exception: Failed to export 3.Condition.ndjson'] });
  });

  it('never matches a name too short or too plain to tell from other words', () => {
    const outputs: OutputFileName[] = [
      { index: 0, type: 'Condition', name: '123' },
      { index: 1, type: 'Condition', name: 'data' },
      { index: 2, type: 'Condition', name: '4567' },
    ];
    const result = triage(
      [outcome({ severity: 'error', code: 'exception', diagnostics: 'row 123 of data 4567 failed' })],
      outputs,
      [],
    );

    expect(result.byFile).toEqual({});
    expect(result.exportWide).toEqual(['error exception: row 123 of data 4567 failed']);
  });

  it('matches only the same chunk in a chunked export, where the chunk jobs reuse file names', () => {
    const outputs: OutputFileName[] = [
      { index: 0, type: 'Condition', name: 'Condition.1.ndjson', chunk: 0 },
      { index: 1, type: 'Condition', name: 'Condition.1.ndjson', chunk: 1 },
    ];
    const triager = new ServerFileErrorTriager(outputs, []);
    triager.addLine(
      outcome({ severity: 'error', code: 'exception', diagnostics: 'Failed to export Condition.1.ndjson' }),
      1,
    );

    expect(triager.result().byFile).toEqual({
      '1': ['error exception: Failed to export Condition.1.ndjson'],
    });
  });

  it('cuts diagnostics to one short line and counts lines that are not OperationOutcomes', () => {
    const result = triage([
      outcome({ severity: 'error', code: 'exception', diagnostics: `Failed\nto export ${'x'.repeat(500)}` }),
      'not json',
      JSON.stringify({ resourceType: 'Patient', id: 'p1' }),
      '',
    ]);

    const [issue] = result.failing;
    expect(issue!.diagnostics!.length).toBeLessThanOrEqual(DIAGNOSTICS_MAX);
    expect(issue!.diagnostics).toMatch(/^Failed to export x+…$/);
    expect(result.unreadableLines).toBe(2);
  });

  it('describes the failures with counts, our keys and the first few reasons', () => {
    const result = triage([
      outcome({
        severity: 'fatal',
        code: 'exception',
        diagnostics: 'Failed to export 2.AllergyIntolerance.ndjson',
      }),
      outcome({
        severity: 'error',
        code: 'processing',
        diagnostics: 'some Condition resources could not be exported',
      }),
      outcome({ severity: 'error', code: 'exception', diagnostics: 'the database went away' }),
      outcome({ severity: 'error', code: 'exception', diagnostics: 'and once more' }),
      outcome({ severity: 'information', code: 'informational', diagnostics: 'done' }),
    ]);

    const text = describeServerFileErrors(result, (index) =>
      index === 1 ? 'type=AllergyIntolerance/part-0002.ndjson' : undefined,
    );

    expect(text).toBe(
      "the server reported 4 failing issue(s) in the manifest's error[] (1 fatal, 3 error; 1 warning/information issue(s) not counted): " +
        'file 1 (type=AllergyIntolerance/part-0002.ndjson): fatal exception; ' +
        'type Condition: error processing; ' +
        'the export: error exception; …',
    );
    // The server's free text stays out of errors: they reach Step Functions state and logs.
    for (const words of ['Failed to export', 'could not be exported', 'database went away'])
      expect(text).not.toContain(words);
  });

  it('reads the name a file URL ends with, decoded', () => {
    expect(fileNameOf('https://ehr.example.org/bulk/abc/2.AllergyIntolerance.ndjson?X-Amz-Signature=s')).toBe(
      '2.AllergyIntolerance.ndjson',
    );
    expect(fileNameOf('https://ehr.example.org/files/Condition%201.ndjson')).toBe('Condition 1.ndjson');
    expect(fileNameOf('https://ehr.example.org/')).toBeUndefined();
    expect(fileNameOf('not a url')).toBeUndefined();
  });
});
