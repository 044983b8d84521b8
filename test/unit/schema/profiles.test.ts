import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseRegisteredSource, parseSourceSettings } from '../../../lambdas/config.js';
import { buildScope } from '../../../lambdas/core/auth/scopes.js';
import { effectiveSettings, settingsForLog } from '../../../lambdas/core/effective-settings.js';
import { PROFILE_NAMES, PROFILES } from '../../../lambdas/schema/profiles.js';
import { PROFILE_DOC, withProfileTables } from '../../../scripts/profile-docs.js';
import { thrown } from '../../support/thrown.js';

const BASE = { id: 'ehr', fhirBaseUrl: 'https://ehr.example.org/fhir' };

/** A setting's value in the parsed settings, by the path a source file writes. */
function valueAt(settings: Record<string, unknown>, path: string): unknown {
  return path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown>)?.[key], settings);
}

/** The smallest source a profile accepts: a Group where the profile exports Groups. */
function minimalSource(profile: string): Record<string, unknown> {
  const { settings } = PROFILES[profile as keyof typeof PROFILES];
  const group = (path: string) => settings.find((setting) => setting.path === path);
  const needsGroup = group('export.level')?.value === 'group' && group('export.groupId') === undefined;
  return { ...BASE, profile, ...(needsGroup ? { export: { groupId: 'g-1' } } : {}) };
}

describe('EHR profiles', () => {
  it.each(PROFILE_NAMES)('%s: every setting it makes is a real setting and takes effect', (name) => {
    // Act
    const settings = parseSourceSettings(minimalSource(name));
    // Assess
    expect(settings.profile).toBe(name);
    for (const setting of PROFILES[name].settings) {
      expect(valueAt(settings, setting.path), `${name} ${setting.path}`).toStrictEqual(setting.value);
      expect(setting.why.length, `${name} ${setting.path} says why`).toBeGreaterThan(10);
      expect(setting.source.length, `${name} ${setting.path} says where from`).toBeGreaterThan(10);
    }
  });

  it('sets no path twice in one profile', () => {
    for (const profile of Object.values(PROFILES)) {
      const paths = profile.settings.map((setting) => setting.path);
      expect(new Set(paths).size, profile.name).toBe(paths.length);
    }
  });

  it("lets the source's own settings win over its profile's, member by member", () => {
    // Act
    const settings = parseSourceSettings({
      ...BASE,
      profile: 'epic',
      scopeCasing: 'lower',
      deadlineHours: 48,
      export: { groupId: 'g-1', maxConcurrentJobs: 2 },
      serverSupports: { until: true },
    });
    // Assess: overridden
    expect(settings.scopeCasing).toBe('lower');
    expect(settings.deadlineHours).toBe(48);
    expect(settings.export.maxConcurrentJobs).toBe(2);
    expect(settings.serverSupports.until).toBe(true);
    // ...and the rest of the profile still applies, next to the overrides in the same object.
    expect(settings.scopeSyntax).toBe('v1');
    expect(settings.export.level).toBe('group');
    expect(settings.serverSupports.levels).toStrictEqual(['group']);
    expect(settings.serverSupports.elements).toBe(false);
    expect(settings.retryAfterCeilingSeconds).toBe(900);
  });

  it('applies the profile of a registry record too (settings on AWS)', () => {
    const source = parseRegisteredSource({
      id: 'bcda',
      clientSecret: 'fhir-bulk-export/bcda',
      settings: { fhirBaseUrl: 'https://sandbox.bcda.cms.gov/api/v2', profile: 'cms-bcda' },
    });
    expect(source.settings.export).toMatchObject({ level: 'group', groupId: 'all', method: 'GET' });
    expect(source.settings.tokenLifetimeSeconds).toBe(1200);
  });

  it('refuses an unknown profile, naming the ones it knows', () => {
    expect(thrown(() => parseSourceSettings({ ...BASE, profile: 'cerner' })).message).toBe(
      `source.profile must be one of ${PROFILE_NAMES.join(', ')} (got "cerner")`,
    );
  });
});

describe('requests a server does not accept are refused when the source is configured', () => {
  it.each([
    [
      'athenahealth ignores _typeFilter',
      {
        profile: 'athenahealth',
        export: { groupId: 'a-1.c-1', typeFilters: ['Observation?category=laboratory'] },
      },
      'source.export.typeFilters asks for _typeFilter, which athenahealth (profile athenahealth) does not accept (it would ignore the filter and export every resource of the type); remove it, or set serverSupports.typeFilter to true if this server does',
    ],
    [
      'Oracle Health has no _elements',
      { profile: 'oracle-health', export: { groupId: 'g', elements: ['id'] } },
      'source.export.elements asks for _elements, which Oracle Health (profile oracle-health) does not accept; remove it, or set serverSupports.elements to true if this server does',
    ],
    [
      'Oracle Health exports Groups only',
      { profile: 'oracle-health', export: { level: 'system' } },
      'source.export.level is system, but Oracle Health (profile oracle-health) offers group level exports only; set export.level (and export.groupId) accordingly, or list system in serverSupports.levels if this server offers it',
    ],
    [
      'BCDA cannot chunk by time (no _until)',
      { profile: 'cms-bcda', export: { chunk: { by: 'time', window: '30d' } } },
      'source.export.chunk asks for _until (chunk.by time), which CMS BCDA (profile cms-bcda) does not accept; chunk by patients instead; remove it, or set serverSupports.until to true if this server does',
    ],
    [
      'Epic takes no includeAssociatedData',
      { profile: 'epic', export: { groupId: 'g', includeAssociatedData: ['LatestProvenanceResources'] } },
      'source.export.includeAssociatedData asks for includeAssociatedData, which Epic (profile epic) does not accept; remove it, or set serverSupports.includeAssociatedData to true if this server does',
    ],
    [
      'Epic lists no file before the export is done',
      { profile: 'epic', export: { groupId: 'g', allowPartialManifests: true } },
      'source.export.allowPartialManifests asks for allowPartialManifests, which Epic (profile epic) does not accept (its files come only once the whole export is done); remove it, or set serverSupports.partialManifests to true if this server does',
    ],
    [
      'BCDA does not organize by patient',
      { profile: 'cms-bcda', export: { organizeOutputBy: 'Patient' } },
      'source.export.organizeOutputBy asks for organizeOutputBy, which CMS BCDA (profile cms-bcda) does not accept (it would ignore it and organize the files by type); remove it, or set serverSupports.organizeOutputBy to true if this server does',
    ],
  ])('%s', (_name, source, message) => {
    expect(thrown(() => parseSourceSettings({ ...BASE, ...source })).message).toBe(message);
  });

  it('accepts the same request once the source says its server supports it', () => {
    const settings = parseSourceSettings({
      ...BASE,
      profile: 'athenahealth',
      serverSupports: { typeFilter: true },
      export: { groupId: 'a-1.c-1', typeFilters: ['Observation?category=laboratory'] },
    });
    expect(settings.export.typeFilters).toStrictEqual(['Observation?category=laboratory']);
  });

  it('refuses capitalized scopes in v2 syntax, which has no such form', () => {
    expect(thrown(() => parseSourceSettings({ ...BASE, scopeCasing: 'capitalized' })).message).toBe(
      'source.scopeCasing capitalized applies to v1 scopes (system/Patient.Read); set scopeSyntax to v1 or scopeCasing to lower',
    );
  });
});

describe('scopes per profile', () => {
  it.each([
    ['epic', 'system/Patient.Read system/Observation.Read'],
    ['athenahealth', 'system/Patient.read system/Observation.read'],
    ['eclinicalworks', 'system/Patient.read system/Observation.read system/Group.read'],
    ['generic', 'system/Patient.rs system/Observation.rs'],
  ])('%s asks for %s', (profile, expected) => {
    const settings = parseSourceSettings(minimalSource(profile));
    expect(
      buildScope({
        resourceTypes: ['Patient', 'Observation'],
        syntax: settings.scopeSyntax,
        casing: settings.scopeCasing,
        extraScopes: settings.extraScopes,
      }),
    ).toBe(expected);
  });
});

describe('effective settings', () => {
  const raw = {
    ...BASE,
    profile: 'oracle-health',
    export: { groupId: 'g-1', patient: ['Patient/p-1'] },
    maxConcurrency: 8,
  };

  it('says where each value comes from, and why when it is the profile', () => {
    // Act
    const source = {
      ...raw,
      export: { ...raw.export, method: 'POST' },
      serverSupports: { patientParameter: true },
    };
    const rows = effectiveSettings(parseSourceSettings(source), source);
    const row = (path: string) => rows.find((candidate) => candidate.path === path);
    // Assess
    expect(row('maxConcurrency')).toStrictEqual({ path: 'maxConcurrency', value: 8, origin: 'source' });
    expect(row('export.groupId')).toMatchObject({ value: 'g-1', origin: 'source' });
    expect(row('retryAfterCeilingSeconds')).toMatchObject({
      value: 3600,
      origin: 'profile',
      why: expect.stringContaining('Retry-After: 600'),
      factSource: expect.stringContaining('group-export.md'),
    });
    expect(row('maxClockSkewSeconds')).toStrictEqual({
      path: 'maxClockSkewSeconds',
      value: 300,
      origin: 'default',
    });
    expect(row('id')).toBeUndefined();
  });

  it('logs a patient list as its length, never its members', () => {
    const settings = parseSourceSettings({
      ...raw,
      serverSupports: { patientParameter: true },
      export: { ...raw.export, method: 'POST' },
    });
    const logged = settingsForLog(settings);
    expect(logged['export.patient']).toBe('1 patients');
    expect(JSON.stringify(logged)).not.toContain('p-1');
    expect(logged['export.typeParameterStyle']).toBe('comma');
  });
});

describe('the profiles reference', () => {
  it(`${PROFILE_DOC} shows every profile's settings as they are (npm run schemas rewrites it)`, () => {
    const page = readFileSync(new URL(`../../../${PROFILE_DOC}`, import.meta.url), 'utf8');
    expect(withProfileTables(page) === page, `${PROFILE_DOC} is stale: run npm run schemas`).toBe(true);
    for (const name of PROFILE_NAMES) expect(page).toContain(`<!-- profile:${name} `);
  });
});
