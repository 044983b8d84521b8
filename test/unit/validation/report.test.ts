import { describe, expect, it } from 'vitest';
import { judge } from '../../../lambdas/validation/policy.js';
import {
  buildValidationSummary,
  emptyPartialSummary,
  issueLines,
  mergePartialSummary,
  renderValidationTable,
  tallyResource,
} from '../../../lambdas/validation/report.js';
import type { ResourceValidation, ValidationIssue } from '../../../lambdas/validation/types.js';

const PATIENT = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient';
const error = (rule: string, expression: string): ValidationIssue => ({
  severity: 'error',
  rule,
  expression,
  message: `${rule} failed`,
});
const warning = (rule: string): ValidationIssue => ({
  severity: 'warning',
  rule,
  expression: 'Patient',
  message: 'w',
});

const patient = (
  id: string,
  issues: ValidationIssue[],
  populated: string[] = ['Patient.name'],
): ResourceValidation => ({
  resourceType: 'Patient',
  id,
  conformant: !issues.some((issue) => issue.severity === 'error'),
  profiles: [{ profile: PATIENT, claimed: id === 'a', issues, mustSupportPopulated: populated }],
});

const RULES = {
  ruleSet: 'hl7.fhir.us.core#6.1.0',
  mustSupportElements: () => ['Patient.name', 'Patient.telecom'],
  profileTitle: () => 'US Core Patient Profile',
};
const ABOUT = { sourceId: 's', transactionTime: 't', exportFolder: 'f/', receiptKey: 'f/_receipt.json' };

describe('the validation report', () => {
  it('counts per type and profile, adds partials up, and gives coverage per must-support element', () => {
    const one = emptyPartialSummary();
    tallyResource(one, patient('a', []));
    tallyResource(
      one,
      patient('b', [error('cardinality:Patient.identifier', 'Patient'), warning('invariant:x')]),
    );
    one.files = 1;
    const two = emptyPartialSummary();
    tallyResource(two, patient('c', [warning('invariant:x')], ['Patient.name', 'Patient.telecom']));
    two.files = 1;
    const merged = emptyPartialSummary();
    mergePartialSummary(merged, one);
    mergePartialSummary(merged, two);

    const summary = buildValidationSummary(merged, RULES, ABOUT);

    expect(summary.totals).toEqual({ checked: 3, conformant: 2, nonConformant: 1, withWarningsOnly: 1 });
    expect(summary.files).toBe(2);
    expect(summary.byType.Patient!.profiles[PATIENT]).toEqual({
      title: 'US Core Patient Profile',
      checked: 3,
      conformant: 2,
      nonConformant: 1,
      withWarningsOnly: 1,
      claimed: 1,
      issues: { 'invariant:x': 2, 'cardinality:Patient.identifier': 1 },
      errors: { 'cardinality:Patient.identifier': 1 },
      mustSupportCoverage: { 'Patient.name': 100, 'Patient.telecom': 33.3 },
    });
  });

  it('gives the same bytes whatever order the partials are merged in', () => {
    const a = emptyPartialSummary();
    tallyResource(a, patient('a', [error('r:2', 'Patient'), error('r:1', 'Patient')]));
    const b = emptyPartialSummary();
    tallyResource(b, { resourceType: 'Observation', id: 'o', conformant: true, profiles: [] });
    const forward = emptyPartialSummary();
    mergePartialSummary(forward, a);
    mergePartialSummary(forward, b);
    const backward = emptyPartialSummary();
    mergePartialSummary(backward, b);
    mergePartialSummary(backward, a);
    expect(JSON.stringify(buildValidationSummary(backward, RULES, ABOUT))).toBe(
      JSON.stringify(buildValidationSummary(forward, RULES, ABOUT)),
    );
  });

  it('lists a non-conformant resource with every issue of the failing profile; a warning-only one not at all', () => {
    const failing = patient('b', [error('binding:Patient.gender', 'Patient.gender'), warning('invariant:x')]);
    expect(issueLines(failing)).toEqual([
      {
        resourceType: 'Patient',
        id: 'b',
        profile: PATIENT,
        issues: [
          {
            severity: 'error',
            rule: 'binding:Patient.gender',
            expression: 'Patient.gender',
            message: 'binding:Patient.gender failed',
          },
          { severity: 'warning', rule: 'invariant:x', expression: 'Patient', message: 'w' },
        ],
      },
    ]);
    expect(issueLines(patient('c', [warning('invariant:x')]))).toEqual([]);
  });

  it('prints per type: checked, % conformant (rounded down) and the top rules, errors before warnings', () => {
    const merged = emptyPartialSummary();
    for (let i = 0; i < 2; i++) tallyResource(merged, patient(`r${i}`, [error('rule:a', 'Patient')]));
    tallyResource(
      merged,
      patient('s', [error('rule:b', 'Patient'), error('rule:c', 'Patient'), error('rule:d', 'Patient')]),
    );
    // A warning on every resource (dom-6, say) is the most frequent rule, but no reason to reject any.
    for (let i = 0; i < 997; i++) tallyResource(merged, patient(`ok${i}`, [warning('invariant:dom-6')]));
    tallyResource(merged, { resourceType: 'Group', id: 'g', conformant: true, profiles: [] });
    expect(renderValidationTable(buildValidationSummary(merged, RULES, ABOUT))).toBe(
      [
        'type     checked  conformant  top rules',
        'Group          1      100.0%  —',
        'Patient     1000       99.7%  rule:a (2), rule:b (1), rule:c (1)',
        'all         1001       99.7%',
      ].join('\n'),
    );
    const onlyWarnings = emptyPartialSummary();
    tallyResource(onlyWarnings, patient('w', [warning('invariant:dom-6')]));
    tallyResource(onlyWarnings, patient('v', [warning('invariant:dom-6'), error('rule:a', 'Patient')]));
    expect(renderValidationTable(buildValidationSummary(onlyWarnings, RULES, ABOUT))).toContain(
      'rule:a (1), invariant:dom-6 (2, warning)',
    );
  });
});

describe('the validation policy', () => {
  const totals = (checked: number, conformant: number) => ({
    checked,
    conformant,
    nonConformant: checked - conformant,
    withWarningsOnly: 0,
  });

  it('report always passes, with the share conformant', () => {
    expect(judge({ enabled: true, mode: 'report', minConformantPercent: 100 }, totals(4, 1))).toEqual({
      passed: true,
      mode: 'report',
      conformantPercent: 25,
    });
  });

  it('gate passes at its threshold, and below it says by how much', () => {
    const gate = { enabled: true, mode: 'gate', minConformantPercent: 95 } as const;
    expect(judge(gate, totals(20, 19)).passed).toBe(true);
    expect(judge(gate, totals(100_000, 94_999))).toEqual({
      passed: false,
      mode: 'gate',
      conformantPercent: 94.99,
      reason:
        "94999 of 100000 resources (94.99%) conform to US Core, below the gate's minConformantPercent of 95%",
    });
    // 99.999% is not the 100% a strict gate asks for.
    expect(judge({ ...gate, minConformantPercent: 100 }, totals(100_000, 99_999)).passed).toBe(false);
    expect(judge({ ...gate, minConformantPercent: 100 }, totals(0, 0)).passed).toBe(true);
  });
});
