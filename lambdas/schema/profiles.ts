/**
 * Per-EHR profiles: what we know of each EHR's Bulk Data server, as data. A
 * source names one (`"profile": "epic"`) and gets every setting below; any
 * setting the source writes itself wins over its profile's (applyProfile).
 *
 * Each setting carries why it is set and where the fact comes from, so
 * `npm run export -- --explain` and docs/registering-with-an-ehr.md can say
 * so, and so a fact whose source changes can be found and corrected. EHR
 * portals and policies change: when a vendor's documentation disagrees with
 * a fact here, the vendor wins, and the source overrides the setting.
 */

export const PROFILE_NAMES = [
  'generic',
  'epic',
  'oracle-health',
  'athenahealth',
  'eclinicalworks',
  'cms-bcda',
  'smart-reference',
] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

/** One setting a profile makes: `path` is the setting as a source file writes it (`export.level`). */
export interface ProfileSetting {
  readonly path: string;
  readonly value: unknown;
  /** What the setting does for this EHR, for `--explain` and the docs. */
  readonly why: string;
  /** Where the fact comes from: a vendor document, the IG, or our own design notes (docs/…). */
  readonly source: string;
}

export interface EhrProfile {
  readonly name: ProfileName;
  /** The EHR's name as errors and `--explain` say it. */
  readonly ehr: string;
  readonly settings: readonly ProfileSetting[];
}

const set = (path: string, value: unknown, why: string, source: string): ProfileSetting => ({
  path,
  value,
  why,
  source,
});

// Where the facts come from. Vendor pages were read 2026-12; repositories at the commits named.
const OUR_NOTES = 'docs/registering-with-an-ehr.md (registration notes)';
const EPIC_BULK = 'Epic on FHIR, Bulk Data (https://fhir.epic.com/Documentation?docId=fhir_bulk_data)';
const EPIC_NOTES =
  'vendor notes of SMART Cumulus (smart-on-fhir/cumulus-etl docs/vendors/epic.md, smart-on-fhir/good-neighbor docs/tips.md)';
const ORACLE_BULK =
  'Oracle Health Millennium, Group export (cerner/fhir.cerner.com content/millennium/bulk-data/group-export.md; https://docs.oracle.com/en/industries/health/millennium-platform-apis/mfbda/)';
const ORACLE_AUTH =
  'Oracle Health Millennium, Authorization (cerner/fhir.cerner.com content/authorization.md)';
const ATHENA_BULK =
  'athenahealth, FHIR Bulk Export workflow (https://docs.athenahealth.com/api/workflows/fhir-bulk-export-workflow)';
const ATHENA_AUTH = 'athenahealth, Token endpoint (https://docs.athenahealth.com/api/guides/token-endpoint)';
const ECW_NOTES =
  'third-party integration guides (https://saga-it.com/blog/eclinicalworks-bulk-fhir-export, https://app2.doordoc.com/docs/backend); no public eClinicalWorks page confirms it';
const BCDA_DOCS =
  'BCDA API documentation (https://bcda.cms.gov/api-documentation/, CMSgov/bcda-static-site) and its server (CMSgov/bcda-app bcda/web/middleware/validation.go)';
const SMART_SERVER = 'smart-on-fhir/bulk-data-server (README.md and its code, v2.1.1)';
const UNCONFIRMED = ' (unconfirmed: not in the vendor’s public documentation; refused to be safe)';

export const PROFILES: Readonly<Record<ProfileName, EhrProfile>> = {
  generic: {
    name: 'generic',
    ehr: 'the server',
    // A server that follows the IG: the schema's defaults are exactly that.
    settings: [],
  },
  epic: {
    name: 'epic',
    ehr: 'Epic',
    settings: [
      set('export.level', 'group', 'Epic exports Groups (registries the health system defines)', EPIC_NOTES),
      set(
        'serverSupports.levels',
        ['group'],
        'system and Patient level kick-offs are refused before they are sent',
        EPIC_BULK,
      ),
      set('scopeSyntax', 'v1', 'backend apps are granted SMART v1 scopes', EPIC_NOTES),
      set(
        'scopeCasing',
        'capitalized',
        'the v1 action spelled with a capital R, system/Patient.Read, as the app registrations we met list it; set lower if yours lists system/Patient.read',
        `${OUR_NOTES}; not confirmed in Epic's public pages`,
      ),
      set(
        'export.maxConcurrentJobs',
        1,
        'one export per client and Group; a rerun of the same Group is refused for a while (24 h by default)',
        EPIC_NOTES,
      ),
      set(
        'deadlineHours',
        168,
        'exports collect all data before the first file is offered, and large Groups take days; a week before we give up',
        `${EPIC_BULK}; ${EPIC_NOTES} (no more than ~1,000 patients per export recommended)`,
      ),
      set(
        'retryAfterCeilingSeconds',
        900,
        'a days-long export polled at most every 15 minutes stays polite and within the history budget',
        'our choice for days-long jobs (docs/reliability.md)',
      ),
      set(
        'serverSupports.until',
        false,
        `\`_until\` is not among Epic's parameters${UNCONFIRMED}`,
        EPIC_NOTES,
      ),
      set(
        'serverSupports.elements',
        false,
        `\`_elements\` is not among Epic's parameters${UNCONFIRMED}`,
        EPIC_NOTES,
      ),
      set(
        'serverSupports.includeAssociatedData',
        false,
        `includeAssociatedData is not among Epic's parameters${UNCONFIRMED}`,
        EPIC_NOTES,
      ),
      set(
        'serverSupports.patientParameter',
        false,
        `the patient parameter (POST kick-off) is not among Epic's parameters${UNCONFIRMED}`,
        EPIC_NOTES,
      ),
      set(
        'serverSupports.partialManifests',
        false,
        'the API collects all data for the requested patients before it returns any: no file is listed early',
        EPIC_BULK,
      ),
      set(
        'serverSupports.organizeOutputBy',
        false,
        `organizeOutputBy is not among Epic's parameters${UNCONFIRMED}`,
        EPIC_NOTES,
      ),
    ],
  },
  'oracle-health': {
    name: 'oracle-health',
    ehr: 'Oracle Health',
    settings: [
      set(
        'export.level',
        'group',
        'Millennium exports Groups the organization creates (at most 20,000 patients)',
        ORACLE_BULK,
      ),
      set(
        'serverSupports.levels',
        ['group'],
        'no system level; the Patient export is documented for another product',
        ORACLE_BULK,
      ),
      set(
        'export.typeParameterStyle',
        'comma',
        '`_type` and `_typeFilter` are comma-delimited lists',
        ORACLE_BULK,
      ),
      set('scopeSyntax', 'v1', 'SMART v1 scopes, system/Observation.read', ORACLE_AUTH),
      set('serverSupports.elements', false, '`_elements` is not supported (400 unless lenient)', ORACLE_BULK),
      set('serverSupports.patientParameter', false, 'the patient parameter is not supported', ORACLE_BULK),
      set('serverSupports.until', false, `\`_until\` is not documented${UNCONFIRMED}`, ORACLE_BULK),
      set(
        'export.maxConcurrentJobs',
        1,
        'one in-progress export per client and tenant; a second kick-off gets 429',
        ORACLE_BULK,
      ),
      set(
        'retryAfterCeilingSeconds',
        3600,
        'status asks for 10 minutes between polls (Retry-After: 600) and large Groups run for hours: honour up to an hour',
        ORACLE_BULK,
      ),
      set(
        'tokenLifetimeSeconds',
        570,
        'access tokens live less than ten minutes (expires_in 570)',
        ORACLE_AUTH,
      ),
      set('fileLinksValidHours', 720, 'output files are deleted 30 days after they are created', ORACLE_BULK),
      set(
        'filesPerBatch',
        100,
        'files are many and small (at most 50 MB gzipped each): the largest batches keep the cost per file down',
        `${ORACLE_BULK}; docs/performance.md (batched downloads)`,
      ),
      set(
        'serverSupports.partialManifests',
        false,
        `allowPartialManifests is not documented${UNCONFIRMED}`,
        ORACLE_BULK,
      ),
      set(
        'serverSupports.organizeOutputBy',
        false,
        `organizeOutputBy is not documented${UNCONFIRMED}`,
        ORACLE_BULK,
      ),
    ],
  },
  athenahealth: {
    name: 'athenahealth',
    ehr: 'athenahealth',
    settings: [
      set(
        'export.level',
        'group',
        'the bulk export Group is the whole practice, Group/a-1.c-<practiceId>',
        ATHENA_BULK,
      ),
      set('serverSupports.levels', ['group'], 'Group-level export only', ATHENA_BULK),
      set('scopeSyntax', 'v1', 'SMART v1 scopes, system/Patient.read', ATHENA_BULK),
      set(
        'serverSupports.typeFilter',
        false,
        '`_typeFilter` is not supported: the filter would be ignored and every resource of the type exported',
        `${ATHENA_BULK} (lists _type and _since only)`,
      ),
      set('serverSupports.until', false, `\`_until\` is not documented${UNCONFIRMED}`, ATHENA_BULK),
      set('serverSupports.elements', false, `\`_elements\` is not documented${UNCONFIRMED}`, ATHENA_BULK),
      set(
        'serverSupports.includeAssociatedData',
        false,
        `includeAssociatedData is not documented${UNCONFIRMED}`,
        ATHENA_BULK,
      ),
      set(
        'serverSupports.patientParameter',
        false,
        `the patient parameter is not documented${UNCONFIRMED}`,
        ATHENA_BULK,
      ),
      set('tokenLifetimeSeconds', 3600, 'each token is valid for one hour and should be cached', ATHENA_AUTH),
      set(
        'deadlineHours',
        120,
        'a whole practice is a large export (athenahealth advises monthly, not daily, exports); five days before we give up',
        ATHENA_BULK,
      ),
      set(
        'serverSupports.partialManifests',
        false,
        `allowPartialManifests is not documented${UNCONFIRMED}`,
        ATHENA_BULK,
      ),
      set(
        'serverSupports.organizeOutputBy',
        false,
        `organizeOutputBy is not documented${UNCONFIRMED}`,
        ATHENA_BULK,
      ),
    ],
  },
  eclinicalworks: {
    name: 'eclinicalworks',
    ehr: 'eClinicalWorks',
    settings: [
      set('export.level', 'group', 'exports start from a Group of the practice', ECW_NOTES),
      set(
        'serverSupports.levels',
        ['patient', 'group'],
        'Patient and Group exports are offered; no system level',
        ECW_NOTES,
      ),
      set(
        'extraScopes',
        ['system/Group.read'],
        'a Group export needs read access to the Group on top of the exported types',
        ECW_NOTES,
      ),
      set('scopeSyntax', 'v1', 'SMART v1 scopes, system/*.read', ECW_NOTES),
      set(
        'tokenLifetimeSeconds',
        300,
        'access tokens live 300 seconds and come without a refresh token: re-minted after half of that, not on every call',
        ECW_NOTES,
      ),
      set('serverSupports.until', false, `\`_until\` is not documented${UNCONFIRMED}`, ECW_NOTES),
      set(
        'serverSupports.includeAssociatedData',
        false,
        `includeAssociatedData is not documented${UNCONFIRMED}`,
        ECW_NOTES,
      ),
      set(
        'serverSupports.partialManifests',
        false,
        `allowPartialManifests is not documented${UNCONFIRMED}`,
        ECW_NOTES,
      ),
      set(
        'serverSupports.organizeOutputBy',
        false,
        `organizeOutputBy is not documented${UNCONFIRMED}`,
        ECW_NOTES,
      ),
    ],
  },
  'cms-bcda': {
    name: 'cms-bcda',
    ehr: 'CMS BCDA',
    settings: [
      set(
        'export.level',
        'group',
        'BCDA exports the Groups `all` (every attributed enrollee) and `runout` (last year’s claims run-out)',
        BCDA_DOCS,
      ),
      set('export.groupId', 'all', 'every attributed enrollee; `runout` is the other Group', BCDA_DOCS),
      set(
        'auth',
        'client_secret_basic',
        'the token endpoint (/auth/token) takes the client id and secret over HTTP Basic, not a signed assertion',
        `${BCDA_DOCS}; How to Get a Bearer Token (https://bcda.cms.gov/api-documentation/get-a-bearer-token.html)`,
      ),
      set('export.method', 'GET', 'only GET kick-offs are routed', BCDA_DOCS),
      set(
        'serverSupports.levels',
        ['patient', 'group'],
        'Patient/$export and Group/[all|runout]/$export; no system level',
        BCDA_DOCS,
      ),
      set(
        'serverSupports.typeFilter',
        false,
        '`_typeFilter` is ignored before API v3, and v3 takes one ExplanationOfBenefit filter only',
        BCDA_DOCS,
      ),
      set('serverSupports.elements', false, '`_elements` gets 400', BCDA_DOCS),
      set('serverSupports.until', false, '`_until` is not implemented (it would be ignored)', BCDA_DOCS),
      set(
        'serverSupports.includeAssociatedData',
        false,
        'includeAssociatedData is not implemented (it would be ignored)',
        BCDA_DOCS,
      ),
      set('serverSupports.patientParameter', false, 'the patient parameter is not implemented', BCDA_DOCS),
      set(
        'tokenLifetimeSeconds',
        1200,
        'access tokens last 20 minutes (expires_in may arrive as the string "1200")',
        BCDA_DOCS,
      ),
      set(
        'fileLinksValidHours',
        24,
        'files expire 24 hours after the job completes: a failed export is resumable that long',
        BCDA_DOCS,
      ),
      set(
        'serverSupports.partialManifests',
        false,
        'allowPartialManifests is not implemented (it would be ignored)',
        BCDA_DOCS,
      ),
      set(
        'serverSupports.organizeOutputBy',
        false,
        'organizeOutputBy is not implemented (it would be ignored)',
        BCDA_DOCS,
      ),
    ],
  },
  'smart-reference': {
    name: 'smart-reference',
    ehr: 'the SMART reference server',
    settings: [
      set('serverSupports.until', false, '`_until` is not read (it would be ignored)', SMART_SERVER),
      set(
        'serverSupports.includeAssociatedData',
        false,
        'not supported (and the IG spelling is ignored rather than refused)',
        SMART_SERVER,
      ),
      set(
        'tokenLifetimeSeconds',
        900,
        'access tokens live 15 minutes at most (capped by the client assertion’s exp)',
        SMART_SERVER,
      ),
      set('fileLinksValidHours', 1, 'exports and their files are deleted after 60 minutes', SMART_SERVER),
    ],
  },
};

/** The profile a source names; `generic` when it names none. */
export const profileOf = (name: ProfileName | undefined): EhrProfile => PROFILES[name ?? 'generic'];

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The raw settings with the profile's settings filled in wherever the source
 * wrote nothing: what the schema then parses (defaults fill what is still
 * missing). Leaves anything it cannot read alone, so the schema reports the
 * mistake (an unknown profile, `export` that is not an object).
 */
export function applyProfile(raw: unknown): unknown {
  if (!isPlainObject(raw)) return raw;
  const name = raw.profile ?? 'generic';
  if (typeof name !== 'string' || !Object.hasOwn(PROFILES, name)) return raw;
  const merged: Record<string, unknown> = { ...raw };
  for (const setting of PROFILES[name as ProfileName].settings) {
    const [head, leaf] = splitPath(setting.path);
    if (leaf === undefined) {
      if (!Object.hasOwn(merged, head)) merged[head] = setting.value;
      continue;
    }
    const inner = merged[head] ?? {};
    if (!isPlainObject(inner)) continue;
    if (!Object.hasOwn(inner, leaf)) merged[head] = { ...inner, [leaf]: setting.value };
  }
  return merged;
}

function splitPath(path: string): [string, string | undefined] {
  const dot = path.indexOf('.');
  return dot < 0 ? [path, undefined] : [path.slice(0, dot), path.slice(dot + 1)];
}

/** Where an effective setting's value comes from. */
export type SettingOrigin = 'source' | 'profile' | 'default';

/** Whether the source file (or registry record) wrote this setting itself. */
export function writtenBySource(raw: unknown, path: string): boolean {
  if (!isPlainObject(raw)) return false;
  const [head, leaf] = splitPath(path);
  if (leaf === undefined) return Object.hasOwn(raw, head);
  const inner = raw[head];
  return isPlainObject(inner) && Object.hasOwn(inner, leaf);
}

/** The profile's own setting at `path`, if it makes one. */
export const profileSetting = (name: ProfileName | undefined, path: string): ProfileSetting | undefined =>
  profileOf(name).settings.find((setting) => setting.path === path);
