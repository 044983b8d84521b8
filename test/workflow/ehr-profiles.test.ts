import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROFILE_NAMES, type ProfileName } from '../../lambdas/schema/profiles.js';
import { EHR_MODES } from '../../scripts/sandbox/ehr-modes.js';
import type { RequestLogEntry } from '../../scripts/sandbox/index.js';
import { type MatrixEnvironment, requestsOf, runScenario, startMatrixEnvironment } from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * Each profile against the sandbox imitating its EHR (scripts/sandbox/ehr-modes.ts): the
 * whole workflow, real ASL and handlers, zero loss. The sandbox refuses what its EHR refuses
 * (Epic's lower-case scopes, Oracle's repeated `_type`, BCDA's Group ids other than all and
 * runout, eClinicalWorks' Group export without system/Group.read), so a profile that set a
 * quirk wrong fails here.
 */

/** What a source of each EHR writes beyond its profile: the Group the EHR gave it. */
const SOURCE_OF: Readonly<Record<ProfileName, Record<string, unknown>>> = {
  generic: { export: { level: 'group', groupId: 'cohort' } },
  epic: { export: { groupId: 'cohort' } },
  'oracle-health': { export: { groupId: 'cohort' } },
  athenahealth: { export: { groupId: 'cohort' } },
  eclinicalworks: { export: { groupId: 'cohort' } },
  // No export settings: the profile's own Group, `all`, which the BCDA mode serves from the sandbox's cohort.
  'cms-bcda': { export: {} },
  'smart-reference': { export: { level: 'group', groupId: 'cohort' } },
};

const TOKEN = /\/auth\/token$/;
const scopesRequested = (requests: readonly RequestLogEntry[]) =>
  requests.filter((entry) => entry.method === 'POST' && TOKEN.test(entry.path));

describe.concurrent('each EHR profile exports from the sandbox imitating that EHR', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment({ patientCount: 30 });
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  }, 60_000);

  it.each(PROFILE_NAMES)(
    '%s: the whole export lands, nothing lost or doubled',
    async (profile) => {
      // Act
      const run = await runScenario(env, {
        name: `profile ${profile}`,
        faults: EHR_MODES[profile].faults,
        source: { profile, ...SOURCE_OF[profile] },
      });
      // Assess
      await assertZeroLoss(env, run, { outcome: 'succeeded' });
      const kickOffs = (await requestsOf(env, run.clientId)).filter((entry) =>
        entry.path.endsWith('/$export'),
      );
      expect(kickOffs.length, 'one kick-off').toBeGreaterThanOrEqual(1);
      if (profile === 'cms-bcda') expect(kickOffs[0]!.path).toContain('/Group/all/$export');
      expect(
        run.logLines.some(
          (line) => line.includes('"effective settings"') && line.includes(`"profile":"${profile}"`),
        ),
        'the effective settings logged once per execution',
      ).toBe(true);
    },
    120_000,
  );

  it("a source overriding its profile is heard: Epic's sandbox refuses lower-case scopes", async () => {
    // Act
    const run = await runScenario(env, {
      name: 'epic lower-case scopes',
      faults: EHR_MODES.epic.faults,
      source: { profile: 'epic', scopeCasing: 'lower', export: { groupId: 'cohort' } },
    });
    // Assess
    expect(run.result.run.status).toBe('FAILED');
    expect(run.result.run.error).toBe('TokenRequestError');
    expect(run.result.run.cause).toContain('invalid_scope');
    expect(scopesRequested(await requestsOf(env, run.clientId)).length).toBeGreaterThan(0);
    expect(env.sandbox.jobs().filter((job) => job.clientId === run.clientId)).toHaveLength(0);
  }, 60_000);

  it("a backfill's _typeFilter to athenahealth fails before kick-off, naming the EHR", async () => {
    // Act
    const run = await runScenario(env, {
      name: 'athena typeFilter',
      faults: EHR_MODES.athenahealth.faults,
      source: { profile: 'athenahealth', export: { groupId: 'cohort' } },
      input: { types: ['Observation'], typeFilters: ['Observation?category=laboratory'] },
    });
    // Assess
    expect(run.result.run.status).toBe('FAILED');
    expect(run.result.run.error).toBe('InvalidExecutionInputError');
    expect(run.result.run.cause).toContain(
      'InvalidExecutionInputError: input.typeFilters asks for _typeFilter, which athenahealth (profile athenahealth) does not accept (it would ignore the filter and export every resource of the type); remove it, or set serverSupports.typeFilter to true if this server does',
    );
    expect(env.sandbox.jobs().filter((job) => job.clientId === run.clientId)).toHaveLength(0);
  }, 60_000);
});
