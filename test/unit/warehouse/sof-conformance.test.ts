/**
 * The SQL on FHIR v2 conformance suite (vendored in sof-suite/, see its README for the commit), every test of
 * every file. A test passes when its view gives exactly the expected rows (as a multiset: the spec makes no
 * promise of row order, e.g. for unionAll), and the expected column order when the test states one; an
 * `expectError` test passes when compiling or running the view throws our ViewDefinitionError.
 *
 * The tests in sof-expected-failures.json are optional ones (tagged experimental) this runner does not pass;
 * they run too, and must still fail, so the list is kept honest.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileView, ViewDefinitionError } from '../../../lambdas/warehouse/view-definition/index.js';

interface SuiteTest {
  title: string;
  tags?: string[];
  view: unknown;
  expect?: Record<string, unknown>[];
  expectCount?: number;
  expectError?: boolean;
  expectColumns?: string[];
}
interface Suite {
  title: string;
  resources: unknown[];
  tests: SuiteTest[];
}

const dir = join(import.meta.dirname, 'sof-suite');
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();
const expectedFailures = JSON.parse(
  readFileSync(join(import.meta.dirname, 'sof-expected-failures.json'), 'utf8'),
) as Record<string, Record<string, string>>;

/** One row as canonical JSON: keys sorted, bigint (integer64) as a number like the suite's JSON. */
const canonical = (row: Record<string, unknown>): string =>
  JSON.stringify(
    Object.fromEntries(
      Object.keys(row)
        .sort()
        .map((k) => [k, row[k]]),
    ),
    (_k, v) => (typeof v === 'bigint' ? Number(v) : v),
  );

type Outcome = { passed: true } | { passed: false; reason: string };

function run(suite: Suite, test: SuiteTest): Outcome {
  let rows: Record<string, unknown>[];
  let columns: string[];
  try {
    const view = compileView(test.view);
    columns = view.columns.map((c) => c.name);
    rows = suite.resources.flatMap((r) => view.rowsOf(r));
  } catch (e) {
    if (!(e instanceof ViewDefinitionError)) return { passed: false, reason: `threw ${String(e)}` };
    return test.expectError ? { passed: true } : { passed: false, reason: e.message };
  }
  if (test.expectError) return { passed: false, reason: `expected an error, got ${rows.length} rows` };
  if (test.expectCount !== undefined && rows.length !== test.expectCount) {
    return { passed: false, reason: `expected ${test.expectCount} rows, got ${rows.length}` };
  }
  if (test.expectColumns && JSON.stringify(columns) !== JSON.stringify(test.expectColumns)) {
    return {
      passed: false,
      reason: `columns ${columns.join(',')}, expected ${test.expectColumns.join(',')}`,
    };
  }
  if (test.expect) {
    const got = rows.map(canonical).sort();
    const want = test.expect.map(canonical).sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      return { passed: false, reason: `rows ${got.join(' ')}; expected ${want.join(' ')}` };
    }
  }
  return { passed: true };
}

let passed = 0;
let total = 0;

describe('SQL on FHIR v2 conformance suite', () => {
  it('vendors every file of the suite, and every listed failure names a test of it that is optional', () => {
    expect(files.length).toBe(22);
    for (const [file, titles] of Object.entries(expectedFailures)) {
      if (file.startsWith('$')) continue;
      const suite = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Suite;
      for (const title of Object.keys(titles)) {
        const test = suite.tests.find((t) => t.title === title);
        expect(test?.title, `${file}: ${title} is not a test of the suite`).toBe(title);
        expect(test?.tags, `${file}: ${title} is not optional`).toContain('experimental');
        expect(test?.tags).not.toContain('shareable');
      }
    }
  });

  for (const file of files) {
    const suite = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Suite;
    describe(file, () => {
      for (const test of suite.tests) {
        const knownFailure = expectedFailures[file]?.[test.title];
        it(knownFailure ? `${test.title} (known failure: ${knownFailure})` : test.title, () => {
          total++;
          const outcome = run(suite, test);
          if (knownFailure) {
            expect(outcome.passed, 'passes now: remove it from sof-expected-failures.json').toBe(false);
          } else {
            expect(outcome).toEqual({ passed: true });
            passed++;
          }
        });
      }
    });
  }

  afterAll(() => {
    console.info(`SQL on FHIR v2 conformance: ${passed} of ${total} tests pass`);
  });

  it('passes all but the listed optional tests: 130 of 134', () => {
    // Runs last within this file (vitest runs a file's tests in order).
    expect({ passed, total }).toEqual({ passed: 130, total: 134 });
  });
});
