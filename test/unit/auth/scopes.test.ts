import { describe, expect, it } from 'vitest';
import {
  buildScope,
  type ScopeRequest,
  scopesNotGranted,
  splitScope,
} from '../../../lambdas/core/auth/scopes.js';

describe('buildScope', () => {
  const table: Array<[string, ScopeRequest, string]> = [
    [
      'v2 by default',
      { resourceTypes: ['Patient', 'Observation'] },
      'system/Patient.rs system/Observation.rs',
    ],
    ['v2 explicitly', { resourceTypes: ['Observation'], syntax: 'v2' }, 'system/Observation.rs'],
    [
      'v1 (athenahealth)',
      { resourceTypes: ['Patient', 'Observation'], syntax: 'v1' },
      'system/Patient.read system/Observation.read',
    ],
    ['all types in v2', { resourceTypes: [] }, 'system/*.rs'],
    ['all types in v1', { resourceTypes: [], syntax: 'v1' }, 'system/*.read'],
    [
      'the override wins (Epic capital R)',
      { resourceTypes: ['Observation'], override: 'system/Patient.Read system/Observation.Read' },
      'system/Patient.Read system/Observation.Read',
    ],
    [
      'an override is whitespace-normalised',
      { resourceTypes: [], override: '  system/Patient.Read\n system/Group.Read ' },
      'system/Patient.Read system/Group.Read',
    ],
    [
      'extra scopes appended (eClinicalWorks Group)',
      { resourceTypes: ['Patient'], syntax: 'v1', extraScopes: ['system/Group.read'] },
      'system/Patient.read system/Group.read',
    ],
    [
      'extra scopes appended to an override',
      { resourceTypes: [], override: 'system/Patient.Read', extraScopes: ['launch/system'] },
      'system/Patient.Read launch/system',
    ],
    [
      'duplicates dropped, order kept',
      { resourceTypes: ['Patient', 'Patient'], extraScopes: ['system/Patient.rs'] },
      'system/Patient.rs',
    ],
  ];
  it.each(table)('%s', (_, request, expected) => {
    expect(buildScope(request)).toBe(expected);
  });

  const bad: Array<[string, ScopeRequest, string]> = [
    [
      'a lower-case type',
      { resourceTypes: ['patient'] },
      'resource type "patient" is not a FHIR resource type name',
    ],
    [
      'a type with a dot',
      { resourceTypes: ['Patient.read'] },
      'resource type "Patient.read" is not a FHIR resource type name',
    ],
    [
      'an empty override',
      { resourceTypes: [], override: '   ' },
      'scope override must not be empty or only whitespace',
    ],
    [
      'a quote in an override',
      { resourceTypes: [], override: 'system/"Patient".read' },
      'scope override contains an invalid scope token; scope tokens are printable ASCII without spaces, quotes or backslashes',
    ],
    [
      'a backslash in an extra scope',
      { resourceTypes: [], extraScopes: ['system\\Group.read'] },
      'extraScopes contains an invalid scope token; scope tokens are printable ASCII without spaces, quotes or backslashes',
    ],
    [
      'an unknown syntax',
      { resourceTypes: [], syntax: 'v3' as never },
      'scopeSyntax must be one of v1, v2 (got "v3")',
    ],
  ];
  it.each(bad)('rejects %s', (_, request, message) => {
    expect(() => buildScope(request)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIGURATION', message }),
    );
  });
});

describe('splitScope and scopesNotGranted', () => {
  it('splits on any whitespace', () => {
    expect(splitScope(' a\tb  c\n')).toStrictEqual(['a', 'b', 'c']);
  });

  it('lists requested scopes the server left out', () => {
    expect(scopesNotGranted('system/Patient.rs system/Observation.rs', 'system/Patient.rs')).toStrictEqual([
      'system/Observation.rs',
    ]);
    expect(scopesNotGranted('system/Patient.rs', 'system/Patient.rs system/Group.rs')).toStrictEqual([]);
  });
});
