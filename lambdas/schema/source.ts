import { z } from 'zod';
import { DEFAULT_MAX_LINE_BYTES, MAX_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES } from '../core/ndjson/line-limit.js';
import { trustedOriginProblem } from '../core/origins.js';
import { checkFetchableUrl } from '../core/urls.js';
import { DELETED_TABLE } from '../warehouse/layout.js';
import { ViewDefinitionError } from '../warehouse/view-definition/index.js';
import { viewsFor } from '../warehouse/views.js';
import { flag, integer, oneOf, patterned, strictObject, text, textList } from './fields.js';
import { applyProfile, PROFILE_NAMES, profileOf } from './profiles.js';

/**
 * The one definition of a source. Everything else derives from it: the
 * Lambdas' parsed settings (`SourceSettings`), the CDK props' settings type
 * (`SourceSettingsInput`), the local source file, the registry record and the
 * JSON Schemas in `schemas/` (scripts/generate-schemas.ts). Defaults live
 * here and nowhere else.
 */

/** It ends up in S3 keys, execution names, KMS aliases and tags. */
export const SOURCE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Whether a value can be a source id: checked before one is used in a key, a metric or a message. */
export const isSourceId = (value: unknown): value is string =>
  typeof value === 'string' && SOURCE_ID_PATTERN.test(value);

export const sourceId = () =>
  patterned(
    SOURCE_ID_PATTERN,
    '1-63 lower-case letters, digits or dashes, starting with a letter or digit',
    'Lower-case id used in S3 keys, execution names, schedules and tags.',
  );

const RESOURCE_TYPE = { regex: /^[A-Z][A-Za-z]{1,63}$/, expected: 'a FHIR resource type such as Patient' };
const TYPE_FILTER = {
  regex: /^[A-Z][A-Za-z]+\?.+$/,
  expected: 'a query like Observation?category=laboratory',
};

/**
 * IG v2 `includeAssociatedData` (https://hl7.org/fhir/uv/bulkdata/export.html#query-parameters and
 * CodeSystem include-associated-data): the two codes the IG defines, or a server's own preset, which
 * the IG requires to start with an underscore.
 */
export const INCLUDE_ASSOCIATED_DATA = {
  regex: /^(LatestProvenanceResources|RelevantProvenanceResources|_[A-Za-z0-9][A-Za-z0-9_.-]*)$/,
  expected:
    'LatestProvenanceResources, RelevantProvenanceResources or a server-defined value starting with _',
};
/** A relative Patient reference with a FHIR id: what the IG's `patient` parameter carries. */
export const PATIENT_REFERENCE = {
  regex: /^Patient\/[A-Za-z0-9\-.]{1,64}$/,
  expected: 'a Patient reference such as Patient/123',
};

/** `30d` or `12h`: a `_since`/`_until` window, or how long before an export is chunked. */
export const SPAN = {
  regex: /^[1-9]\d{0,4}[dh]$/,
  expected: 'a whole number of days or hours such as 30d or 12h',
};
/** How long to wait before chunking: `45m`, `12h`, `2d` (seconds too, for tests and impatient sandboxes). */
export const DURATION = {
  regex: /^[1-9]\d{0,5}[smhd]$/,
  expected: 'a whole number of seconds, minutes, hours or days such as 45m, 12h or 2d',
};
/** Where a chunked export's patient list is: an object in S3, one `Patient/<id>` per line. */
export const S3_OBJECT_URL = {
  regex: /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/.+$/,
  expected: 's3://<bucket>/<key>',
};

/** Patients per chunk beyond which a `patient` parameter is no longer a chunk (servers cap its size). */
export const MAX_PATIENTS_PER_CHUNK = 10_000;

/**
 * How a chunked export splits its cohort. One object rather than a union so that a
 * mistake gets one message naming the field, not a union's "no option matched".
 */
export const chunkShape = {
  by: oneOf(
    ['patients', 'time'],
    'patients: slices of the cohort sent as the `patient` parameter (POST); time: `_since`/`_until` windows.',
  ),
  size: integer(1, MAX_PATIENTS_PER_CHUNK, 'Patients per chunk (by patients).').optional(),
  window: patterned(
    SPAN.regex,
    SPAN.expected,
    'The length of each window, such as 30d (by time).',
  ).optional(),
  patientsFrom: patterned(
    S3_OBJECT_URL.regex,
    S3_OBJECT_URL.expected,
    "The cohort's patients as an S3 object, one Patient/<id> per line (by patients); default: the Group's members.",
  ).optional(),
};

export const chunkSchema = strictObject(chunkShape, 'A chunked export: its cohort as several server jobs.');

/** A chunk setting's own rules: what each `by` needs. */
export function chunkProblem(chunk: {
  readonly by: 'patients' | 'time';
  readonly size?: number | undefined;
  readonly window?: string | undefined;
  readonly patientsFrom?: string | undefined;
}): { readonly field: string; readonly message: string } | undefined {
  if (chunk.by === 'patients') {
    if (chunk.size === undefined) return { field: 'size', message: 'is required when chunk.by is patients' };
    if (chunk.window !== undefined)
      return { field: 'window', message: 'applies to chunk.by time only; remove it or use by time' };
    return undefined;
  }
  if (chunk.window === undefined) return { field: 'window', message: 'is required when chunk.by is time' };
  if (chunk.size !== undefined || chunk.patientsFrom !== undefined)
    return {
      field: chunk.size !== undefined ? 'size' : 'patientsFrom',
      message: 'applies to chunk.by patients only; remove it or use by patients',
    };
  return undefined;
}

const exportShape = {
  level: oneOf(
    ['system', 'patient', 'group'],
    "Export level. Default: 'group' when groupId is set, else 'system'.",
  ).optional(),
  groupId: text('The Group to export (level group).').optional(),
  types: textList(RESOURCE_TYPE, '`_type`; empty = every type the server offers.').default([]),
  typeFilters: textList(
    TYPE_FILTER,
    '`_typeFilter` queries such as Observation?category=laboratory.',
  ).default([]),
  elements: textList(undefined, '`_elements`.').default([]),
  method: oneOf(
    ['GET', 'POST'],
    'Kick-off method: newer IG versions prefer POST, some servers only have GET.',
  ).default('GET'),
  typeParameterStyle: oneOf(
    ['comma', 'repeat'],
    'Oracle Health rejects a repeated `_type`: join with commas.',
  ).default('comma'),
  outputFormat: text('`_outputFormat`.').default('application/fhir+ndjson'),
  includeAssociatedData: textList(
    INCLUDE_ASSOCIATED_DATA,
    '`includeAssociatedData`: Provenance the server adds to the export; empty = not sent.',
  ).default([]),
  patient: textList(
    PATIENT_REFERENCE,
    '`patient`: restrict a patient or group level export to these patients (method POST only, per the IG).',
  ).default([]),
  chunk: chunkSchema
    .optional()
    .meta({ description: 'Export the cohort in chunks from the start (see docs/chunking.md).' }),
  chunkOnTimeout: patterned(
    DURATION.regex,
    DURATION.expected,
    'An export in one piece not complete this long after it started is DELETEd and run again as `chunk` says.',
  ).optional(),
  maxConcurrentJobs: integer(
    1,
    50,
    'Server jobs of one chunked export running at once (Epic and Oracle Health allow 1 per client).',
  ).default(1),
  maxChunkAttempts: integer(
    1,
    10,
    'Kick-offs per chunk before the export fails; a failed chunk is retried alone.',
  ).default(3),
  // Bulk Data 2.0/2.1 output options (issue 16 part 4); the IG's words are quoted in core/manifest.ts.
  allowPartialManifests: flag(
    '`allowPartialManifests=true`: the server may list files while it still exports (a 202 with a manifest), and they are downloaded then. Not with chunking.',
  ).optional(),
  organizeOutputBy: oneOf(
    ['Patient'],
    "`organizeOutputBy`: files hold blocks of one patient's resources of several types, landed under `organizedBy=Patient/`.",
  ).optional(),
};

const exportSchema = strictObject(exportShape, 'What to export and how to ask for it.');

export const EXPORT_LEVELS = ['system', 'patient', 'group'] as const;

/**
 * What the server accepts, as its profile knows it (the defaults are the IG's
 * client-visible features). A request that needs what the server lacks is
 * refused before kick-off: a server may ignore a parameter it does not know
 * (the IG lets it ignore `_typeFilter`), and an ignored filter exports far more
 * than was asked for.
 */
const serverSupportsShape = {
  levels: z
    .array(oneOf(EXPORT_LEVELS), {
      error: () => `must be an array of ${EXPORT_LEVELS.join(', ')}`,
    })
    .min(1, { error: () => 'must name at least one export level' })
    .default([...EXPORT_LEVELS])
    .meta({ description: 'Export levels the server offers.' }),
  typeFilter: flag('`_typeFilter` is applied (a server may ignore it, exporting everything).').default(true),
  until: flag('`_until` is accepted (chunks by time send it).').default(true),
  elements: flag('`_elements` is accepted.').default(true),
  includeAssociatedData: flag('`includeAssociatedData` is accepted.').default(true),
  patientParameter: flag(
    'The `patient` parameter of a POST kick-off is accepted (chunks by patients send it).',
  ).default(true),
  partialManifests: flag('`allowPartialManifests`: files are listed while the export runs (IG 2.0).').default(
    true,
  ),
  organizeOutputBy: flag('`organizeOutputBy=Patient`: files organized by patient (IG 2.0).').default(true),
};
const serverSupportsSchema = strictObject(
  serverSupportsShape,
  'What the server accepts; set by the profile.',
);

export const SCOPE_TOKEN = { regex: /^[\x21\x23-\x5B\x5D-\x7E]+$/, expected: 'a scope token without spaces' };

/** A source's settings apart from its id and credentials. */
const settingsShape = {
  description: text('For people: what this source is.').optional(),
  profile: oneOf(
    PROFILE_NAMES,
    "The EHR: sets every quirk we know for it (docs/registering-with-an-ehr.md); the source's own settings win.",
  ).default('generic'),
  fhirBaseUrl: text('The FHIR base URL (https; http only for loopback hosts in local mode).'),
  export: exportSchema.prefault({}),
  serverSupports: serverSupportsSchema.prefault({}),
  scopeSyntax: oneOf(
    ['v1', 'v2'],
    'SMART scope syntax: v1 system/Patient.read, v2 system/Patient.rs.',
  ).default('v2'),
  scopeCasing: oneOf(
    ['lower', 'capitalized'],
    'capitalized: the v1 action spelled with a capital letter, system/Patient.Read (Epic).',
  ).default('lower'),
  extraScopes: textList(
    SCOPE_TOKEN,
    'Scopes added to the computed ones (eClinicalWorks: system/Group.read).',
  ).default([]),
  tokenLifetimeSeconds: integer(
    60,
    86_400,
    'How long an access token lives when the token response does not say (expires_in).',
  ).default(300),
  maxConcurrency: integer(1, 1000, 'Files downloaded at once (the Map’s MaxConcurrency).').default(4),
  filesPerBatch: integer(
    1,
    100,
    'Small files one Download child lands together (a file the manifest says is large goes alone); 1 = a child per file.',
  ).default(50),
  retryAfterCeilingSeconds: integer(
    5,
    86_400,
    'Longest wait between polls that a server may ask for (Oracle Health may need hours).',
  ).default(300),
  deadlineHours: integer(
    1,
    24 * 14,
    'Give up on an export not complete after this long (Epic can take days).',
  ).default(72),
  maxConsecutiveTransientErrors: integer(0, 1000, 'Consecutive transient status errors tolerated.').default(
    10,
  ),
  maxClockSkewSeconds: integer(
    0,
    86_400,
    "How far a manifest's transactionTime may be ahead of our clock before the export is refused.",
  ).default(300),
  allowInsecureHttp: flag('Local mode only: allow http:// for loopback hosts.').default(false),
  invalidLinePolicy: oneOf(
    ['fail', 'quarantine'],
    'What to do with a line that is not a valid resource.',
  ).default('fail'),
  maxLineBytes: integer(
    MIN_MAX_LINE_BYTES,
    MAX_MAX_LINE_BYTES,
    'Longest NDJSON line accepted, in bytes; Download File’s memory follows it.',
  ).default(DEFAULT_MAX_LINE_BYTES),
  fileLinksValidHours: integer(
    1,
    24 * 30,
    "How long a completed job's file links stay valid when the server sends no Expires: how long a failed export stays resumable.",
  ).default(24),
  retryPassDelaySeconds: integer(
    0,
    3600,
    'The pause before the pass that retries the files the first pass could not land.',
  ).default(60),
  // Issue 16 part 5: files the server itself reports as failed (OperationOutcomes in the manifest's error[]).
  serverFileErrors: oneOf(
    ['fail', 'accept'],
    "What to do when the manifest's error[] reports files the server could not produce: fail the export naming the server's reasons, or land what was delivered as a partial export (_PARTIAL.json, receipt complete: false).",
  ).default('fail'),
  // Where the bearer token may go (issue 16): see lambdas/core/origins.ts.
  trustedOrigins: textList(
    undefined,
    "Origins besides the FHIR base URL's that may receive the access token, such as a vendor's file or status host " +
      '(https://host[:port], no path); a status URL, manifest page or token-requiring file elsewhere fails the export.',
  ).default([]),
  // Auth mode (issue 16 part 2): not a secret, so a setting; it decides which credential the source needs.
  auth: oneOf(
    ['private_key_jwt', 'client_secret_basic'],
    'How the client authenticates at the token endpoint: private_key_jwt (SMART Backend Services: a signed assertion) or client_secret_basic (RFC 6749 §2.3.1: client id and secret in a Basic header; CMS BCDA).',
  ).default('private_key_jwt'),
  // US Core validation of each export (issue 17): whether it runs, and whether it only reports or also
  // gates (lambdas/validation/policy.ts, docs/validation.md "Policy").
  validation: strictObject(
    {
      enabled: flag(
        'Validate each successful export against US Core (state-machines/validate-export.asl.json).',
      ).default(true),
      mode: oneOf(
        ['report', 'gate'],
        'report: _VALIDATED.json says passed: true with the counts; gate: passed only when minConformantPercent of the resources are conformant.',
      ).default('report'),
      minConformantPercent: integer(
        0,
        100,
        'gate: the share of checked resources (in %) that must be conformant for passed: true.',
      ).default(100),
    },
    'US Core validation after each successful export: report only, or gate on a conformance threshold.',
  ).prefault({}),
  // The warehouse load of each export (issue 18): whether it runs, and the source's own SQL on FHIR views
  // (lambdas/warehouse/views.ts viewsFor; compiled when the source is checked, so a wrong view fails there).
  warehouse: strictObject(
    {
      enabled: flag(
        'Load each complete export (after its validation when that is on) into the warehouse as Parquet tables (state-machines/load-warehouse.asl.json).',
      ).default(true),
      views: z
        .array(z.record(z.string(), z.unknown()), {
          error: (issue) => `must be a list of ViewDefinition objects (got ${typeof issue.input})`,
        })
        .meta({
          description:
            "The source's own SQL on FHIR v2 ViewDefinitions (JSON objects): a view with a default view's name replaces it, any other name adds a table. A name is lower-case letters, digits and _; not deleted, not ending in _latest.",
        })
        .optional(),
    },
    'The warehouse load after each complete export: SQL on FHIR views written as Parquet tables.',
  ).prefault({}),
};

/** How a source authenticates (SMART Backend Services), wherever its credentials are kept. */
const credentialShape = {
  clientId: text('The client id registered with the EHR.').optional(),
  kmsKeyId: text('An asymmetric KMS key that signs (id, ARN or alias).').optional(),
  tokenUrl: text('Token endpoint; otherwise discovered from .well-known/smart-configuration.').optional(),
  scope: text('A complete scope string that replaces the computed one.').optional(),
};

/** Credentials in a local source file: a private JWK file on disk, or a KMS key. */
const localAuthShape = {
  ...credentialShape,
  privateKeyFile: text('Path of the private JWK file (relative to this file).').optional(),
  // Key rotation and client_secret_basic (issue 16 part 2): the next/previous keys are only published
  // (npm run keys -- jwks); the secret is named here, never written here.
  nextPrivateKeyFile: text(
    'Path of the next private JWK file during a key rotation: published in the JWKS, not used to sign.',
  ).optional(),
  previousPrivateKeyFile: text(
    'Path of the previous private JWK file after a key rotation: published in the JWKS until EHRs no longer need it.',
  ).optional(),
  clientSecretEnv: patterned(
    /^[A-Za-z_][A-Za-z0-9_]*$/,
    'an environment variable name such as BCDA_CLIENT_SECRET',
    'auth client_secret_basic: the environment variable holding the client secret.',
  ).optional(),
  clientSecretFile: text(
    'auth client_secret_basic: path of a file holding the client secret (relative to this file).',
  ).optional(),
};

/**
 * A source's Secrets Manager secret on AWS: `{ clientId, kmsKeyId | privateJwk, … }`.
 * The private JWK's members are checked by client-config.ts `validatePrivateJwk`,
 * which checks key files too.
 */
export const ClientSecretSchema = strictObject({
  ...credentialShape,
  clientId: text('The client id registered with the EHR.'),
  // Settings now; still read from a secret written before they were, and winning over the settings.
  scopeSyntax: oneOf(['v1', 'v2'], 'SMART scope syntax (overrides the source setting).').optional(),
  extraScopes: textList(
    SCOPE_TOKEN,
    'Scopes added to the computed ones (on top of the source setting).',
  ).optional(),
  privateJwk: z.unknown().optional().meta({ description: 'A private JWK (kid, alg, d, …).' }),
  clientSecret: text('auth client_secret_basic: the client secret issued by the EHR (CMS BCDA).').optional(),
});

/** The credential keys of a local source file. */
export const AUTH_KEYS: readonly string[] = Object.keys(localAuthShape);
/** Keys that hold or point at credentials: they never belong in settings, the registry or a Lambda's environment. */
export const CREDENTIAL_KEYS: readonly string[] = [...AUTH_KEYS, 'privateJwk', 'clientSecret'];

/** The credential keys each auth mode takes, in a Secrets Manager secret and in a local source file. */
export const CREDENTIALS_BY_AUTH = {
  private_key_jwt: { secret: ['kmsKeyId', 'privateJwk'], local: ['privateKeyFile', 'kmsKeyId'] },
  client_secret_basic: { secret: ['clientSecret'], local: ['clientSecretEnv', 'clientSecretFile'] },
} as const;

/** A source file that holds a secret's value gets told where the value belongs instead. */
const secretValueHint = (keys: readonly string[]) =>
  keys.includes('clientSecret') || keys.includes('privateJwk')
    ? 'a secret never belongs in a source file: name it with clientSecretEnv (an environment variable) or clientSecretFile (a file), privateKeyFile for a key, or on AWS put it in the source’s Secrets Manager secret'
    : undefined;

type ParsedSettings = z.output<z.ZodObject<typeof settingsShape>>;

/**
 * The profile's settings fill in what the source leaves out before the schema
 * parses (then the defaults fill the rest): a preprocess keeps the JSON Schema
 * that of what a person writes.
 */
function withProfile<S extends z.ZodType>(schema: S) {
  // Typed as what a person writes (the preprocess accepts anything and hands the schema its input).
  return z.preprocess(applyProfile, schema) as unknown as z.ZodPipe<z.ZodType<z.input<S>, z.input<S>>, S>;
}

/** Cross-field rules: the URL policy needs allowInsecureHttp; a group export needs its Group. */
function checkSettings(settings: ParsedSettings, context: z.core.$RefinementCtx): void {
  const check = checkFetchableUrl(settings.fhirBaseUrl, settings.allowInsecureHttp);
  if (!check.ok) context.addIssue({ code: 'custom', path: ['fhirBaseUrl'], message: check.reason });
  settings.trustedOrigins.forEach((origin, index) => {
    const problem = trustedOriginProblem(origin, settings.allowInsecureHttp);
    if (problem !== undefined)
      context.addIssue({ code: 'custom', path: ['trustedOrigins', index], message: problem });
  });
  const { level, groupId } = settings.export;
  if (level === 'group' && groupId === undefined)
    context.addIssue({
      code: 'custom',
      path: ['export', 'groupId'],
      message: 'is required when export.level is group',
    });
  if (level !== undefined && level !== 'group' && groupId !== undefined)
    context.addIssue({
      code: 'custom',
      path: ['export', 'groupId'],
      message: `is set but export.level is ${level}; use level group`,
    });
  const problem = patientParameterProblem(settings.export);
  if (problem !== undefined)
    context.addIssue({ code: 'custom', path: ['export', 'patient'], message: problem });
  const chunking = chunkingProblem(settings.export);
  if (chunking !== undefined)
    context.addIssue({ code: 'custom', path: ['export', ...chunking.path], message: chunking.message });
  const unsupported = unsupportedByServer(settings, {
    level: level ?? (groupId === undefined ? 'system' : 'group'),
    ...settings.export,
  });
  if (unsupported !== undefined)
    context.addIssue({ code: 'custom', path: ['export', unsupported.field], message: unsupported.message });
  const views = warehouseViewsProblem(settings.warehouse.views);
  if (views !== undefined) context.addIssue({ code: 'custom', path: ['warehouse', 'views'], message: views });
  if (settings.scopeCasing === 'capitalized' && settings.scopeSyntax !== 'v1')
    context.addIssue({
      code: 'custom',
      path: ['scopeCasing'],
      message:
        'capitalized applies to v1 scopes (system/Patient.Read); set scopeSyntax to v1 or scopeCasing to lower',
    });
}

/**
 * A source's views compile as the load will compile them (the runner's own error otherwise), and none takes
 * a name the warehouse keeps for itself: the deleted ids' table, and the `<table>_latest` views over deltas.
 */
function warehouseViewsProblem(views: readonly unknown[] | undefined): string | undefined {
  if (views === undefined || views.length === 0) return undefined;
  try {
    viewsFor(views);
  } catch (error) {
    if (error instanceof ViewDefinitionError) return error.message;
    throw error;
  }
  for (const [i, view] of views.entries()) {
    const name = (view as { name?: unknown }).name as string;
    if (name === DELETED_TABLE || name.endsWith('_latest')) {
      return `views[${i}] is named "${name}": the warehouse keeps "${DELETED_TABLE}" and names ending in _latest for itself (the deleted ids' table, the latest-version views); expected another name`;
    }
  }
  return undefined;
}

/** What an export asks of the server: the source's export settings, or an execution's request. */
export interface RequestedFeatures {
  readonly level: (typeof EXPORT_LEVELS)[number];
  readonly typeFilters: readonly string[];
  readonly elements: readonly string[];
  readonly includeAssociatedData: readonly string[];
  readonly patient: readonly string[];
  /** True when the request carries `_until` (an execution's window). */
  readonly until?: boolean | undefined;
  readonly chunk?: { readonly by: 'patients' | 'time' } | undefined;
  readonly allowPartialManifests?: boolean | undefined;
  readonly organizeOutputBy?: string | undefined;
}

/**
 * The first thing a request asks of the server that its profile says the server
 * does not accept, named by the setting that asks for it; checked when the
 * source is configured and again for each execution's request, always before
 * kick-off. The message names the EHR and says both ways out.
 */
export function unsupportedByServer(
  settings: {
    readonly profile: (typeof PROFILE_NAMES)[number];
    readonly serverSupports: z.output<typeof serverSupportsSchema>;
  },
  request: RequestedFeatures,
): { readonly field: string; readonly message: string } | undefined {
  const supports = settings.serverSupports;
  const { ehr } = profileOf(settings.profile);
  const refuse = (field: string, parameter: string, support: keyof typeof supports, effect: string) => ({
    field,
    message: `asks for ${parameter}, which ${ehr} (profile ${settings.profile}) does not accept${effect}; remove it, or set serverSupports.${support} to true if this server does`,
  });
  if (!supports.levels.includes(request.level))
    return {
      field: 'level',
      message: `is ${request.level}, but ${ehr} (profile ${settings.profile}) offers ${supports.levels.join(' and ')} level exports only; set export.level (and export.groupId) accordingly, or list ${request.level} in serverSupports.levels if this server offers it`,
    };
  if (request.typeFilters.length > 0 && !supports.typeFilter)
    return refuse(
      'typeFilters',
      '_typeFilter',
      'typeFilter',
      ' (it would ignore the filter and export every resource of the type)',
    );
  if (request.elements.length > 0 && !supports.elements)
    return refuse('elements', '_elements', 'elements', '');
  if (request.includeAssociatedData.length > 0 && !supports.includeAssociatedData)
    return refuse('includeAssociatedData', 'includeAssociatedData', 'includeAssociatedData', '');
  if (request.patient.length > 0 && !supports.patientParameter)
    return refuse('patient', 'the patient parameter', 'patientParameter', '');
  if (request.chunk?.by === 'patients' && !supports.patientParameter)
    return refuse(
      'chunk',
      'the patient parameter (chunk.by patients)',
      'patientParameter',
      '; chunk by time instead',
    );
  if (request.chunk?.by === 'time' && !supports.until)
    return refuse('chunk', '_until (chunk.by time)', 'until', '; chunk by patients instead');
  if (request.until && !supports.until) return refuse('until', '_until', 'until', '');
  if (request.allowPartialManifests && !supports.partialManifests)
    return refuse(
      'allowPartialManifests',
      'allowPartialManifests',
      'partialManifests',
      ' (its files come only once the whole export is done)',
    );
  if (request.organizeOutputBy !== undefined && !supports.organizeOutputBy)
    return refuse(
      'organizeOutputBy',
      'organizeOutputBy',
      'organizeOutputBy',
      ' (it would ignore it and organize the files by type)',
    );
  return undefined;
}

/**
 * What a chunk setting needs of the rest of the export: patient chunks travel as the
 * `patient` parameter, which the IG defines for POST kick-offs of patient or group level,
 * and replace any fixed `patient` list; `chunkOnTimeout` needs to know how to chunk.
 * Also used for an execution input's `chunk`.
 */
export function chunkingProblem(settings: {
  readonly level?: 'system' | 'patient' | 'group' | undefined;
  readonly groupId?: string | undefined;
  readonly method: 'GET' | 'POST';
  readonly patient: readonly string[];
  readonly chunk?: Parameters<typeof chunkProblem>[0] | undefined;
  readonly chunkOnTimeout?: string | undefined;
  readonly allowPartialManifests?: boolean | undefined;
}): { readonly path: readonly string[]; readonly message: string } | undefined {
  const { chunk } = settings;
  // A chunk's files land only when every chunk is complete (Merge Chunks numbers them across chunks),
  // so files a chunk's job lists early could not be downloaded early: refused rather than ignored.
  if (settings.allowPartialManifests && (chunk !== undefined || settings.chunkOnTimeout !== undefined))
    return {
      path: ['allowPartialManifests'],
      message:
        'cannot be combined with export.chunk or export.chunkOnTimeout: a chunked export lands its files after every chunk is complete; turn one of them off',
    };
  if (chunk === undefined) {
    return settings.chunkOnTimeout === undefined
      ? undefined
      : {
          path: ['chunkOnTimeout'],
          message: 'needs export.chunk: how to split the export when it times out',
        };
  }
  const own = chunkProblem(chunk);
  if (own) return { path: ['chunk', own.field], message: own.message };
  if (chunk.by !== 'patients') return undefined;
  const level = settings.level ?? (settings.groupId === undefined ? 'system' : 'group');
  if (level === 'system')
    return {
      path: ['chunk', 'by'],
      message:
        'patients applies to patient or group level exports only; set export.level to patient or group, or chunk by time',
    };
  if (settings.method !== 'POST')
    return {
      path: ['chunk', 'by'],
      message: 'patients sends the patient parameter, which needs export.method POST (GET cannot carry it)',
    };
  if (level === 'patient' && chunk.patientsFrom === undefined)
    return {
      path: ['chunk', 'patientsFrom'],
      message:
        'is required to chunk a patient level export by patients (a group level export reads its Group)',
    };
  if (settings.patient.length > 0)
    return {
      path: ['patient'],
      message: 'cannot be combined with chunk.by patients, which sets patient per chunk',
    };
  return undefined;
}

/**
 * The IG defines `patient` for POST kick-offs of patient or group level only: refused when the
 * source is configured, not at kick-off time days later. Also used for an execution input's override.
 */
export function patientParameterProblem(settings: {
  readonly level?: 'system' | 'patient' | 'group' | undefined;
  readonly groupId?: string | undefined;
  readonly method: 'GET' | 'POST';
  readonly patient: readonly string[];
}): string | undefined {
  if (settings.patient.length === 0) return undefined;
  const level = settings.level ?? (settings.groupId === undefined ? 'system' : 'group');
  if (level === 'system')
    return 'applies to patient or group level exports only; set export.level to patient or group';
  if (settings.method !== 'POST')
    return 'needs export.method POST (the IG defines patient for POST kick-offs only)';
  return undefined;
}

const SETTING_KEYS = Object.keys(settingsShape).filter(
  (key) => key !== 'description' && key !== 'export',
) as Exclude<keyof typeof settingsShape, 'description' | 'export'>[];

/** Only the settings: a source file's credentials, `$schema` and `description` stay behind. */
function toSourceSettings(id: string, settings: ParsedSettings) {
  const picked = Object.fromEntries(SETTING_KEYS.map((key) => [key, settings[key]])) as Pick<
    ParsedSettings,
    (typeof SETTING_KEYS)[number]
  >;
  // An editor's `$schema` or `$comment` in the export object is no setting.
  const { level, groupId, $schema: _schema, $comment: _comment, ...exportSettings } = settings.export;
  return {
    id,
    ...picked,
    fhirBaseUrl: settings.fhirBaseUrl.replace(/\/+$/, ''),
    export: {
      level: level ?? (groupId === undefined ? 'system' : 'group'),
      ...(groupId === undefined ? {} : { groupId }),
      ...exportSettings,
    },
  };
}

/** A source's settings without its id: the CDK props' `settings` and the registry record's. */
export const SourceSettingsSchema = withProfile(
  strictObject(
    {
      id: sourceId()
        .optional()
        .meta({ description: 'Set the id once, on the source; here it may only repeat it.' }),
      ...settingsShape,
    },
    'A source’s non-secret settings.',
    (keys) =>
      keys.some((key) => CREDENTIAL_KEYS.includes(key))
        ? "credentials belong in the source's client secret, not in its settings"
        : undefined,
  ).superRefine(checkSettings),
);

/**
 * A local source file: id, settings and the credentials used on a laptop
 * (`npm run export -- --source <file>`). `schemas/source.schema.json`.
 */
export const SourceFileSchema = withProfile(
  strictObject(
    { id: sourceId(), ...settingsShape, ...localAuthShape },
    'A FHIR Bulk Data source for a local run: settings and credentials.',
    secretValueHint,
  ).superRefine(checkSettings),
);

/**
 * A source in the registry (`<prefix>_registry/sources/<id>.json` in the
 * export bucket): read by the Lambdas at run time, so adding or changing a
 * source redeploys nothing. `schemas/registered-source.schema.json`.
 */
export const RegisteredSourceSchema = strictObject(
  {
    id: sourceId(),
    clientSecret: text(
      'ARN or name of the Secrets Manager secret holding the credentials, tagged fhir-bulk-export-source=<id>.',
    ),
    settings: SourceSettingsSchema,
  },
  'A source registered with a deployed pipeline.',
).superRefine((source, context) => {
  if (source.settings.id !== undefined && source.settings.id !== source.id)
    context.addIssue({
      code: 'custom',
      path: ['settings', 'id'],
      message: `is "${source.settings.id}" but the source id is "${source.id}"; set the id once, on the source`,
    });
});

export type SourceSettings = ReturnType<typeof toSourceSettings> & {
  readonly export: { readonly level: 'system' | 'patient' | 'group' };
};
export type ExportSettings = SourceSettings['export'];
/** What a CDK app or config file writes for a source's settings: defaults may be left out. */
export type SourceSettingsInput = z.input<typeof SourceSettingsSchema>;
export type SourceFile = z.output<typeof SourceFileSchema>;

export interface RegisteredSource {
  readonly id: string;
  readonly clientSecret: string;
  readonly settings: SourceSettings;
}

export const settingsOf = (id: string, settings: ParsedSettings): SourceSettings =>
  toSourceSettings(id, settings) as SourceSettings;
