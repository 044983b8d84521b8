/**
 * Kick-off parameters (Bulk Data IG v2 + `_until`): gathered from a GET query or a POST
 * `Parameters` resource, validated, and turned into what the export will select.
 *
 * An unsupported or invalid parameter is an error (400 + OperationOutcome) unless the client
 * sent `Prefer: handling=lenient`; then it is ignored and reported in the manifest's `error[]`
 * (IG: "the server SHOULD include a FHIR OperationOutcome resource for each of these parameters").
 */
import { type Dataset, EXPORTABLE_TYPES, type ExportableType } from '../data/types.js';
import type { FaultPlan } from '../faults.js';
import type { OperationOutcomeIssue } from '../http.js';

export type ExportLevel = 'system' | 'patient' | 'group';

/** Types outside the Patient compartment: a Patient or Group export returns those its patients' resources reference. */
const NON_COMPARTMENT_TYPES: readonly ExportableType[] = ['Practitioner', 'Organization', 'Group'];

/** Types an export at this level returns when `_type` is absent (the client's scopes permitting). */
export function typesAtLevel(_level: ExportLevel): readonly ExportableType[] {
  return EXPORTABLE_TYPES;
}

export const OUTPUT_FORMATS = ['application/fhir+ndjson', 'application/ndjson', 'ndjson'];
const INCLUDE_ASSOCIATED_DATA = ['LatestProvenanceResources', 'RelevantProvenanceResources'];
const FORBIDDEN_TYPE_FILTER_PARAMS = ['_include', '_revinclude', '_sort', '_count', '_elements', '_summary'];
/** FHIR instant: a full date-time with seconds and a zone. */
const INSTANT =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$/;

export interface KickoffParameter {
  readonly name: string;
  /** A string for query parameters and primitive `value[x]`; the Reference for `valueReference`. */
  readonly value: string | { readonly reference?: string };
}

export interface ExportSpec {
  /** Types asked for with `_type`, in order, or undefined for "everything the client may see". */
  readonly requestedTypes?: readonly ExportableType[];
  readonly since?: string;
  readonly until?: string;
  readonly elements: ReadonlyMap<ExportableType, readonly string[]>;
  readonly typeFilters: ReadonlyMap<ExportableType, readonly string[]>;
  /** Patient compartment restriction from the `patient` parameter (Patient resource ids). */
  readonly patientIds?: readonly string[];
  /** `includeAssociatedData` values accepted, in order. */
  readonly includeAssociatedData: readonly string[];
  /** `organizeOutputBy=Patient`: files of patient blocks (see export/organized-files.ts). */
  readonly organizeOutputBy?: 'Patient';
  /** `allowPartialManifests=true`: a 202 may list the files ready so far (see export/partial-manifests.ts). */
  readonly allowPartialManifests?: boolean;
}

export interface KickoffInput {
  readonly method: 'GET' | 'POST';
  readonly level: ExportLevel;
  readonly parameters: readonly KickoffParameter[];
  readonly lenient: boolean;
  readonly faults: FaultPlan;
  readonly dataset: Pick<Dataset, 'checkTypeFilter'>;
  /** Whether a Patient id exists (and, for a Group export, is a member). */
  readonly patientKnown: (id: string) => 'ok' | 'unknown' | 'not-member';
}

export type KickoffParse =
  | { readonly ok: true; readonly spec: ExportSpec; readonly ignored: readonly OperationOutcomeIssue[] }
  | { readonly ok: false; readonly issues: readonly OperationOutcomeIssue[] };

const isExportable = (t: string): t is ExportableType => (EXPORTABLE_TYPES as readonly string[]).includes(t);

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * `_typeFilter` values are comma-separated `Type?query` items, but a query may itself contain
 * commas (`code=a,b`), and some clients escape the separating commas (Epic): split only on
 * commas that start a new `Type?`.
 */
export function splitTypeFilters(value: string): string[] {
  return value
    .split(/,(?=\s*[A-Z][A-Za-z]*\?)/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Reads the parameters of a GET query string. */
export function parametersFromQuery(query: URLSearchParams): KickoffParameter[] {
  return [...query.entries()].map(([name, value]) => ({ name, value }));
}

/** Reads a `Parameters` resource; throws an Error with a diagnostic when it is not one. */
export function parametersFromResource(body: unknown): KickoffParameter[] {
  if (
    typeof body !== 'object' ||
    body === null ||
    (body as { resourceType?: unknown }).resourceType !== 'Parameters'
  ) {
    throw new Error('the POST body must be a FHIR Parameters resource');
  }
  const list = (body as { parameter?: unknown }).parameter ?? [];
  if (!Array.isArray(list)) throw new Error('Parameters.parameter must be an array');
  return list.map((p: unknown, i) => {
    if (typeof p !== 'object' || p === null || typeof (p as { name?: unknown }).name !== 'string') {
      throw new Error(`Parameters.parameter[${i}] has no name`);
    }
    const record = p as Record<string, unknown>;
    const valueKeys = Object.keys(record).filter((k) => k.startsWith('value'));
    if (valueKeys.length !== 1) {
      throw new Error(`Parameters.parameter[${i}] (${record.name}) must have exactly one value[x]`);
    }
    const key = valueKeys[0]!;
    const value = record[key];
    if (key === 'valueReference') {
      if (typeof value !== 'object' || value === null) {
        throw new Error(`Parameters.parameter[${i}].valueReference must be a Reference`);
      }
      return { name: record.name as string, value: value as { reference?: string } };
    }
    if (typeof value !== 'string' && typeof value !== 'boolean' && typeof value !== 'number') {
      throw new Error(`Parameters.parameter[${i}].${key} must be a primitive`);
    }
    return { name: record.name as string, value: String(value) };
  });
}

const issue = (code: string, diagnostics: string): OperationOutcomeIssue => ({
  severity: 'error',
  code,
  diagnostics,
});

export function parseKickoff(input: KickoffInput): KickoffParse {
  const { level, faults } = input;
  /** Problems the lenient preference may turn into warnings. */
  const soft: OperationOutcomeIssue[] = [];
  /** Problems no preference can excuse. */
  const hard: OperationOutcomeIssue[] = [];
  const byName = new Map<string, KickoffParameter[]>();
  for (const p of input.parameters) byName.set(p.name, [...(byName.get(p.name) ?? []), p]);

  const strings = (name: string): string[] => {
    const values: string[] = [];
    for (const p of byName.get(name) ?? []) {
      if (typeof p.value === 'string') values.push(p.value);
      else soft.push(issue('invalid', `${name} must be a string, not a Reference`));
    }
    return values;
  };
  const single = (name: string): string | undefined => {
    const values = strings(name);
    if (values.length > 1) soft.push(issue('invalid', `${name} may be given only once`));
    return values.length === 1 ? values[0] : undefined;
  };
  const instant = (name: string): string | undefined => {
    const value = single(name);
    if (value === undefined) return undefined;
    if (!INSTANT.test(value) || Number.isNaN(Date.parse(value))) {
      soft.push(
        issue(
          'invalid',
          `${name} must be a FHIR instant (e.g. 2024-01-01T00:00:00Z), got ${JSON.stringify(value)}`,
        ),
      );
      return undefined;
    }
    return new Date(Date.parse(value)).toISOString();
  };

  const known = new Set([
    '_outputFormat',
    '_since',
    '_until',
    '_type',
    '_elements',
    '_typeFilter',
    'patient',
    'includeAssociatedData',
    'organizeOutputBy',
    'allowPartialManifests',
  ]);
  if (input.faults.untilUnsupported) known.delete('_until');
  for (const name of byName.keys()) {
    if (!known.has(name)) soft.push({ ...issue('not-supported', `parameter ${name} is not supported`) });
  }

  const outputFormat = single('_outputFormat');
  if (outputFormat !== undefined && !OUTPUT_FORMATS.includes(outputFormat)) {
    soft.push(
      issue(
        'not-supported',
        `_outputFormat ${outputFormat} is not supported; use one of ${OUTPUT_FORMATS.join(', ')}`,
      ),
    );
  }

  const since = instant('_since');
  let until = known.has('_until') ? instant('_until') : undefined;
  if (since !== undefined && until !== undefined && Date.parse(until) <= Date.parse(since)) {
    soft.push(issue('invalid', '_until must be later than _since'));
    until = undefined;
  }

  const allowedTypes = typesAtLevel(level);
  const checkType = (type: string, where: string): type is ExportableType => {
    if (isExportable(type) && allowedTypes.includes(type)) return true;
    soft.push(issue('not-supported', `${where}: resource type ${type} is not supported by this server`));
    return false;
  };

  const typeValues = strings('_type');
  if (faults.rejectRepeatedType && typeValues.length > 1) {
    hard.push(issue('not-supported', '_type may be given only once; comma-join the types'));
  }
  let requestedTypes: ExportableType[] | undefined;
  if (typeValues.length > 0) {
    requestedTypes = [];
    for (const type of typeValues.flatMap(splitList)) {
      if (checkType(type, '_type') && !requestedTypes.includes(type)) requestedTypes.push(type);
    }
    // IG: a Patient or Group export asking only for types outside the Patient compartment is an error.
    if (
      level !== 'system' &&
      requestedTypes.length > 0 &&
      requestedTypes.every((t) => NON_COMPARTMENT_TYPES.includes(t))
    ) {
      soft.push(
        issue(
          'not-supported',
          `_type: ${requestedTypes.join(', ')} ${requestedTypes.length > 1 ? 'are' : 'is'} outside the Patient compartment; a ${level}-level export needs at least one Patient compartment type`,
        ),
      );
      requestedTypes = [];
    }
  }

  const elements = new Map<ExportableType, string[]>();
  const elementValues = strings('_elements').flatMap(splitList);
  if (faults.rejectElements && elementValues.length > 0) {
    hard.push(issue('not-supported', '_elements is not supported by this server'));
  } else {
    const untyped: string[] = [];
    const typed: [ExportableType, string][] = [];
    for (const element of elementValues) {
      const parts = element.split('.');
      const name = parts[parts.length - 1]!;
      if (parts.length > 2 || !/^[a-z][A-Za-z0-9]*$/.test(name)) {
        soft.push(
          issue('not-supported', `_elements: ${element} is not a root element (Type.element or element)`),
        );
      } else if (parts.length === 2) {
        if (checkType(parts[0]!, '_elements')) typed.push([parts[0] as ExportableType, name]);
      } else {
        untyped.push(name);
      }
    }
    if (untyped.length > 0 || typed.length > 0) {
      for (const type of allowedTypes) {
        const list = [...untyped, ...typed.filter(([t]) => t === type).map(([, e]) => e)];
        if (list.length > 0) elements.set(type, [...new Set(list)]);
      }
    }
  }

  const typeFilters = new Map<ExportableType, string[]>();
  for (const filter of strings('_typeFilter').flatMap(splitTypeFilters)) {
    const q = filter.indexOf('?');
    const type = q === -1 ? filter : filter.slice(0, q);
    const query = q === -1 ? '' : filter.slice(q + 1);
    if (q === -1 || query === '') {
      soft.push(issue('invalid', `_typeFilter: ${filter} is not of the form Type?query`));
      continue;
    }
    if (!checkType(type, '_typeFilter')) continue;
    const forbidden = [...new URLSearchParams(query).keys()].filter((k) =>
      FORBIDDEN_TYPE_FILTER_PARAMS.includes(k.split(':')[0]!),
    );
    if (forbidden.length > 0) {
      soft.push(
        issue('invalid', `_typeFilter: ${forbidden.join(', ')} may not be used in a _typeFilter query`),
      );
      continue;
    }
    const problem = input.dataset.checkTypeFilter(type, query);
    if (problem !== undefined) {
      soft.push(issue('not-supported', `_typeFilter ${filter}: ${problem}`));
      continue;
    }
    // Servers may ignore _typeFilter; clients SHOULD be robust to that (IG).
    if (!faults.ignoreTypeFilter) typeFilters.set(type, [...(typeFilters.get(type) ?? []), query]);
  }

  let patientIds: string[] | undefined;
  const patients = byName.get('patient') ?? [];
  if (patients.length > 0) {
    if (input.method === 'GET') {
      soft.push(
        issue('not-supported', 'patient is only supported in a POST kick-off (a Parameters resource)'),
      );
    } else if (level === 'system') {
      soft.push(issue('not-supported', 'patient does not apply to a system-level export'));
    } else {
      patientIds = [];
      for (const p of patients) {
        const reference = typeof p.value === 'object' ? p.value.reference : undefined;
        const match = reference ? /(?:^|\/)Patient\/([A-Za-z0-9\-.]{1,64})$/.exec(reference) : null;
        if (!match) {
          soft.push(
            issue(
              'invalid',
              `patient must be a valueReference to Patient/[id], got ${JSON.stringify(p.value)}`,
            ),
          );
          continue;
        }
        const id = match[1]!;
        const known = input.patientKnown(id);
        if (known === 'ok') {
          if (!patientIds.includes(id)) patientIds.push(id);
        } else {
          soft.push(
            issue(
              'not-found',
              known === 'unknown'
                ? `patient Patient/${id} does not exist`
                : `patient Patient/${id} is not a member of the Group`,
            ),
          );
        }
      }
      if (patientIds.length === 0) patientIds = undefined;
    }
  }

  const includeAssociatedData: string[] = [];
  for (const value of strings('includeAssociatedData').flatMap(splitList)) {
    // IG: the two codes, or a server-defined value starting with _. Accepted, and nothing is added:
    // the dataset holds no Provenance, so there is no latest or relevant one to include.
    if (!INCLUDE_ASSOCIATED_DATA.includes(value) && !value.startsWith('_')) {
      soft.push(
        issue(
          'not-supported',
          `includeAssociatedData value ${value} is not supported; use ${INCLUDE_ASSOCIATED_DATA.join(', ')} or a server-defined value starting with _`,
        ),
      );
    } else if (!includeAssociatedData.includes(value)) includeAssociatedData.push(value);
  }

  const organizeOutputBy = single('organizeOutputBy');
  // The IG lets any resource type organize; this server organizes by Patient only.
  if (organizeOutputBy !== undefined && organizeOutputBy !== 'Patient') {
    soft.push(issue('not-supported', `organizeOutputBy ${organizeOutputBy} is not supported; use Patient`));
  }
  const allowPartial = single('allowPartialManifests');
  if (allowPartial !== undefined && allowPartial !== 'true' && allowPartial !== 'false') {
    soft.push(issue('invalid', `allowPartialManifests must be true or false, got ${allowPartial}`));
  }

  if (hard.length > 0 || (soft.length > 0 && !input.lenient))
    return { ok: false, issues: [...hard, ...soft] };
  const spec: ExportSpec = {
    ...(requestedTypes ? { requestedTypes } : {}),
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    elements,
    typeFilters,
    ...(patientIds ? { patientIds } : {}),
    includeAssociatedData,
    ...(organizeOutputBy === 'Patient' ? { organizeOutputBy } : {}),
    ...(allowPartial === 'true' ? { allowPartialManifests: true } : {}),
  };
  return {
    ok: true,
    spec,
    ignored: soft.map((i) => ({
      ...i,
      severity: 'warning',
      diagnostics: `ignored (handling=lenient): ${i.diagnostics}`,
    })),
  };
}
