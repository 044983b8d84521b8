/**
 * The `nonConformant` fault: chosen resources of an export break US Core 6.1.0 in chosen ways, with
 * exact counts, as EHRs whose profile-conformance settings are lax send them. The dataset itself
 * stays conformant; the fault rewrites the chosen lines of the export's files (their true content:
 * this is what the server exported, not a transport corruption).
 *
 * Which resources: for each kind, the first n resources of its type in the export's order (the order
 * of `dataset.lines` for the export's selection) that have what the kind breaks, skipping those an
 * earlier kind of the same type took, so kinds never share a resource. Files, pages, retries and
 * re-reads of one export all show the same resources; counts are per export.
 */
import type { ExportableType } from '../data/types.js';

type Resource = Record<string, unknown>;

interface NonConformanceKind {
  readonly type: ExportableType;
  /** What the resource must have for this kind to break it; also shown when too few do. */
  readonly eligible: (resource: Resource) => boolean;
  readonly needs: string;
  readonly apply: (resource: Resource) => void;
}

/**
 * Codes EHRs send instead of administrative-gender's (HL7 v2 table 0001's M, F, U): outside
 * http://hl7.org/fhir/ValueSet/administrative-gender, which us-core-patient binds Patient.gender to
 * (required).
 */
const V2_GENDER: Readonly<Record<string, string>> = { male: 'M', female: 'F', other: 'U', unknown: 'U' };
const PROBLEM_LIST_ITEM = 'problem-list-item';

function codings(concept: unknown): Resource[] {
  const coding = (concept as Resource | undefined)?.coding;
  return Array.isArray(coding) ? (coding as Resource[]) : [];
}

/** Kinds in the order they take resources of a shared type. */
export const NON_CONFORMANCE_KINDS = {
  /** us-core-patient: Patient.identifier 1..*. */
  missingPatientIdentifier: {
    type: 'Patient',
    needs: 'an identifier',
    eligible: (r) => Array.isArray(r.identifier) && r.identifier.length > 0,
    apply: (r) => {
      delete r.identifier;
    },
  },
  /** us-core-patient: Patient.gender 1..1, binding required to administrative-gender. */
  genderOutsideValueSet: {
    type: 'Patient',
    needs: 'a gender',
    eligible: (r) => typeof r.gender === 'string',
    apply: (r) => {
      r.gender = V2_GENDER[r.gender as string] ?? 'U';
    },
  },
  /** Every US Core Observation profile: Observation.category 1..* with its profile's slice 1..1. */
  observationWithoutCategory: {
    type: 'Observation',
    needs: 'a category',
    eligible: (r) => Array.isArray(r.category) && r.category.length > 0,
    apply: (r) => {
      delete r.category;
    },
  },
  /**
   * con-3 (base R4 Condition, kept by us-core-condition-problems-health-concerns, severity warning:
   * clinicalStatus is 0..1 there): clinicalStatus SHALL be present when the category is
   * problem-list-item and verificationStatus is not entered-in-error.
   * Only un-abated Conditions are taken: without clinicalStatus an abated one would also break con-4,
   * and the count would no longer say which rule it breaks.
   */
  conditionWithoutClinicalStatus: {
    type: 'Condition',
    needs:
      'category problem-list-item, a clinicalStatus, no abatement and a verificationStatus other than entered-in-error',
    eligible: (r) =>
      r.clinicalStatus !== undefined &&
      Array.isArray(r.category) &&
      r.category.some((category) => codings(category).some((c) => c.code === PROBLEM_LIST_ITEM)) &&
      !Object.keys(r).some((key) => key.startsWith('abatement')) &&
      !codings(r.verificationStatus).some((c) => c.code === 'entered-in-error'),
    apply: (r) => {
      delete r.clinicalStatus;
    },
  },
} as const satisfies Record<string, NonConformanceKind>;

export type NonConformanceKindName = keyof typeof NON_CONFORMANCE_KINDS;
export const NON_CONFORMANCE_KIND_NAMES = Object.keys(NON_CONFORMANCE_KINDS) as NonConformanceKindName[];

/** How many resources each kind breaks. */
export type NonConformantPlan = Partial<Readonly<Record<NonConformanceKindName, number>>>;

/** The ids each kind broke, in export order. */
export type NonConformantResources = Readonly<Record<NonConformanceKindName, readonly string[]>>;

/** Validates the fault's setting; returns the problem, or undefined when it is valid. */
export function nonConformantPlanProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return `expected an object of kind to count (kinds: ${NON_CONFORMANCE_KIND_NAMES.join(', ')})`;
  }
  for (const [kind, count] of Object.entries(value)) {
    if (!(kind in NON_CONFORMANCE_KINDS)) {
      return `unknown kind "${kind}" (expected ${NON_CONFORMANCE_KIND_NAMES.join(', ')})`;
    }
    if (!Number.isInteger(count) || (count as number) < 0) {
      return `kind "${kind}": expected a non-negative integer count`;
    }
  }
  return undefined;
}

/** Too few resources in the export for a kind's count. */
export class NonConformanceCountError extends Error {
  override readonly name = 'NonConformanceCountError';
}

const LINE_HEAD = /^\{"resourceType":"([A-Za-z]+)","id":"([^"]+)"/;

/**
 * Chooses the resources to break. `lines(type)` yields the export's resources of a type in export
 * order (undefined when the export has no such type). Throws NonConformanceCountError naming the
 * asked count and the available one when a type has too few.
 */
export function chooseNonConformant(
  plan: NonConformantPlan,
  lines: (type: ExportableType) => Iterable<string> | undefined,
): NonConformantResources {
  const chosen = Object.fromEntries(NON_CONFORMANCE_KIND_NAMES.map((kind) => [kind, [] as string[]]));
  const taken = new Set<string>();
  for (const kind of NON_CONFORMANCE_KIND_NAMES) {
    const wanted = plan[kind] ?? 0;
    if (wanted === 0) continue;
    const { type, eligible, needs } = NON_CONFORMANCE_KINDS[kind];
    const ids = chosen[kind]!;
    for (const line of lines(type) ?? []) {
      const resource = JSON.parse(line) as Resource;
      const id = resource.id as string;
      if (taken.has(`${type}/${id}`) || !eligible(resource)) continue;
      ids.push(id);
      taken.add(`${type}/${id}`);
      // The first n are enough: a large export is not read to its end at kick-off.
      if (ids.length === wanted) break;
    }
    if (ids.length < wanted) {
      const others = NON_CONFORMANCE_KIND_NAMES.filter(
        (other) => other !== kind && NON_CONFORMANCE_KINDS[other].type === type && (plan[other] ?? 0) > 0,
      );
      throw new NonConformanceCountError(
        `faults.nonConformant.${kind}: ${wanted} ${type} resources asked, but this export has only ${ids.length} ${type} resources with ${needs}${others.length > 0 ? ` not already taken by ${others.join(', ')}` : ''}`,
      );
    }
  }
  return chosen as unknown as NonConformantResources;
}

/** Rewrites the chosen resources' lines; every other line passes through untouched. */
export function nonConformanceRewriter(resources: NonConformantResources): (line: string) => string {
  const kindOf = new Map<string, NonConformanceKindName>();
  for (const kind of NON_CONFORMANCE_KIND_NAMES) {
    for (const id of resources[kind]) kindOf.set(`${NON_CONFORMANCE_KINDS[kind].type}/${id}`, kind);
  }
  if (kindOf.size === 0) return (line) => line;
  return (line) => {
    const head = LINE_HEAD.exec(line);
    const kind = head === null ? undefined : kindOf.get(`${head[1]}/${head[2]}`);
    if (kind === undefined) return line;
    const resource = JSON.parse(line) as Resource;
    NON_CONFORMANCE_KINDS[kind].apply(resource);
    return JSON.stringify(resource);
  };
}
