import { describe, expect, it } from 'vitest';
import { parseSourceSettings } from '../../../lambdas/config.js';
import { ConfigurationError } from '../../../lambdas/errors.js';
import { thrown } from '../../support/thrown.js';

const MINIMAL = { id: 'epic', fhirBaseUrl: 'https://ehr.example.org/fhir/r4/' };
const GROUP_POST = { groupId: 'cohort', method: 'POST' } as const;

describe('export.includeAssociatedData and export.patient', () => {
  it('default to empty lists, so nothing is sent', () => {
    // Act
    const settings = parseSourceSettings(MINIMAL);
    // Assess
    expect(settings.export).toMatchObject({ includeAssociatedData: [], patient: [] });
  });

  it('accept the IG codes, a server-defined _ value and Patient references on a POST group export', () => {
    // Act
    const settings = parseSourceSettings({
      ...MINIMAL,
      export: {
        ...GROUP_POST,
        includeAssociatedData: ['LatestProvenanceResources', 'RelevantProvenanceResources', '_history'],
        patient: ['Patient/123', 'Patient/a-b.c'],
      },
    });
    // Assess
    expect(settings.export).toMatchObject({
      level: 'group',
      groupId: 'cohort',
      includeAssociatedData: ['LatestProvenanceResources', 'RelevantProvenanceResources', '_history'],
      patient: ['Patient/123', 'Patient/a-b.c'],
    });
  });

  it('accept patient on a POST patient-level export', () => {
    // Act
    const settings = parseSourceSettings({
      ...MINIMAL,
      export: { level: 'patient', method: 'POST', patient: ['Patient/1'] },
    });
    // Assess
    expect(settings.export.patient).toEqual(['Patient/1']);
  });

  it.each([
    [
      'an includeAssociatedData value that is neither the IG’s nor server-defined',
      { ...GROUP_POST, includeAssociatedData: ['AllProvenance'] },
      'source.export.includeAssociatedData[0] must be LatestProvenanceResources, RelevantProvenanceResources or a server-defined value starting with _',
    ],
    [
      'includeAssociatedData as a comma list in one string',
      { ...GROUP_POST, includeAssociatedData: ['LatestProvenanceResources,_history'] },
      'source.export.includeAssociatedData[0] must be LatestProvenanceResources, RelevantProvenanceResources or a server-defined value starting with _',
    ],
    [
      'a patient that is a bare id',
      { ...GROUP_POST, patient: ['Patient/1', '123'] },
      'source.export.patient[1] must be a Patient reference such as Patient/123',
    ],
    [
      'a patient that references another type',
      { ...GROUP_POST, patient: ['Practitioner/1'] },
      'source.export.patient[0] must be a Patient reference such as Patient/123',
    ],
    [
      'patient with method GET (the default)',
      { groupId: 'cohort', patient: ['Patient/1'] },
      'source.export.patient needs export.method POST (the IG defines patient for POST kick-offs only)',
    ],
    [
      'patient at the system level (no groupId)',
      { method: 'POST', patient: ['Patient/1'] },
      'source.export.patient applies to patient or group level exports only; set export.level to patient or group',
    ],
  ])('refuse %s, naming the field and what is expected', (_, exportSettings, message) => {
    // Act
    const error = thrown(() => parseSourceSettings({ ...MINIMAL, export: exportSettings }));
    // Assess
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toBe(message);
  });
});
