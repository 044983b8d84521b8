/**
 * The sandbox imitating one EHR: a client registered with `ehr: "epic"` (or every client of a
 * sandbox started with `--ehr epic`) meets that EHR's documented behaviour, made of the fault
 * plans in faults.ts. The facts and their sources are the profiles' (lambdas/schema/profiles.ts);
 * a workflow test exports from each mode with the matching profile (test/workflow/ehr-profiles.test.ts).
 */
import { PROFILE_NAMES, type ProfileName } from '../../lambdas/schema/profiles.js';
import type { FaultPlan } from './faults.js';

export const EHR_MODE_NAMES = PROFILE_NAMES;
export type EhrMode = ProfileName;

export interface EhrModeDefinition {
  /** What the mode does, for `npm run sandbox -- --help` and the README. */
  readonly summary: string;
  readonly faults: FaultPlan;
}

export const EHR_MODES: Readonly<Record<EhrMode, EhrModeDefinition>> = {
  generic: { summary: 'the IG as written', faults: {} },
  epic: {
    summary:
      'capital-R v1 scopes (system/Patient.Read), Group exports only, one export per client until it is DELETEd, no _until, a bare 400 from the token endpoint now and then',
    faults: {
      capitalizedScopes: true,
      groupExportOnly: true,
      oneExportUntilDelete: true,
      concurrentExports: 1,
      untilUnsupported: true,
      token400: 1,
    },
  },
  'oracle-health': {
    summary:
      'v1 scopes, Group exports only, one export per client, comma-joined _type, no _elements, a long queue, many small files behind 307 redirects to presigned links, 570-second tokens',
    faults: {
      v1ScopesOnly: true,
      groupExportOnly: true,
      concurrentExports: 1,
      rejectRepeatedType: true,
      rejectElements: true,
      untilUnsupported: true,
      jobDurationMs: 2000,
      statusRetryAfterSeconds: 2,
      resourcesPerFile: 25,
      redirectFiles: true,
      tokenLifetimeSeconds: 570,
    },
  },
  athenahealth: {
    summary:
      'v1 scopes, Group exports only, _typeFilter ignored (everything of the type is exported), 1-hour tokens',
    faults: {
      v1ScopesOnly: true,
      groupExportOnly: true,
      ignoreTypeFilter: true,
      untilUnsupported: true,
      tokenLifetimeSeconds: 3600,
    },
  },
  eclinicalworks: {
    summary: 'v1 scopes, 300-second tokens, Group-first: only Group exports, which need system/Group.read',
    faults: {
      v1ScopesOnly: true,
      tokenLifetimeSeconds: 300,
      requireGroupScope: true,
      groupExportOnly: true,
      untilUnsupported: true,
    },
  },
  'cms-bcda': {
    summary:
      'Groups all and runout only, GET kick-offs only, _since as a full instant, no Retry-After while exporting, 20-minute tokens whose expires_in is a string, files that 404 once',
    faults: {
      bcdaGroups: true,
      getKickOffOnly: true,
      sinceNeedsTimestamp: true,
      noStatusRetryAfter: true,
      untilUnsupported: true,
      rejectElements: true,
      tokenLifetimeSeconds: 1200,
      tokenExpiresInAsString: true,
      file404: 1,
    },
  },
  'smart-reference': {
    summary: 'the SMART reference server: Retry-After 1, 15-minute tokens, no _until',
    faults: { statusRetryAfterSeconds: 1, tokenLifetimeSeconds: 900, untilUnsupported: true },
  },
};

export function isEhrMode(value: unknown): value is EhrMode {
  return typeof value === 'string' && Object.hasOwn(EHR_MODES, value);
}
