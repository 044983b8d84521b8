/**
 * The sandbox's synthetic FHIR R4 data. Nothing is stored: a resource is a pure function of
 * (seed, type, owner, j), generated on demand, so a cohort of millions costs no memory and any
 * slice of an export file is generated without the resources before it.
 *
 * Order of a selection: by owner (patient, practitioner, organization or group index), then by
 * the owner's record number. Patient-scoped selections (Group or `patient`) return Practitioner
 * and Organization resources that the selected patients' resources reference (not all of them),
 * and the Groups that have at least one selected patient as a member.
 */
import { formatInstant, parseInstant } from './clock.js';
import { type ClinicalType, Cohort, meanPerPatient, SALT } from './cohort.js';
import { subsetter } from './elements.js';
import type { TypeModel } from './model.js';
import { allergyIntoleranceModel } from './resources/allergy-intolerance.js';
import { conditionModel } from './resources/condition.js';
import { documentReferenceModel } from './resources/document-reference.js';
import { encounterModel } from './resources/encounter.js';
import { defineGroups, type GroupDefinition, groupModel } from './resources/group.js';
import { immunizationModel } from './resources/immunization.js';
import { medicationRequestModel } from './resources/medication-request.js';
import { observationModel } from './resources/observation.js';
import { organizationModel } from './resources/organization.js';
import { patientModel } from './resources/patient.js';
import { practitionerModel } from './resources/practitioner.js';
import { procedureModel } from './resources/procedure.js';
import { compileTypeFilter, type ResourcePredicate } from './search.js';
import {
  type Dataset,
  type DatasetOptions,
  EXPORTABLE_TYPES,
  type ExportableType,
  type ResourceSelection,
} from './types.js';

export { patientId } from './model.js';

export const DATASET_DEFAULTS: Readonly<Required<DatasetOptions>> = Object.freeze({
  seed: 42,
  patientCount: 1000,
  epoch: '2026-01-01T00:00:00Z',
});

/**
 * Far above what the benchmark needs (about 21 KB of NDJSON per patient), and low enough that
 * the `cohort` Group resource, which lists every member on one line, stays a few hundred MB.
 */
export const MAX_PATIENT_COUNT = 5_000_000;

/** A slice index remembers where every CHECKPOINT_EVERY-th selected resource is. */
const CHECKPOINT_EVERY = 4096;
/** Selections whose slice index is kept: an export has a dozen types, a server a few exports. */
const PLAN_CACHE_SIZE = 64;
/** Share of a type's resources that were deleted during the history. */
const DELETED_SHARE = 0.01;

/** Patient index of a sandbox Patient id (`pt-<index>`), or undefined when it is not one. */
export function parsePatientId(id: string): number | undefined {
  const match = /^pt-(0|[1-9]\d{0,8})$/.exec(id);
  return match === null ? undefined : Number(match[1]);
}

export function createDataset(options: DatasetOptions = {}): Dataset {
  const resolved = resolveOptions(options);
  const cohort = new Cohort(resolved.seed, resolved.patientCount, parseInstant(resolved.epoch));
  const groups = defineGroups(cohort);
  const models = createModels(cohort, groups);
  const plans = new PlanCache(cohort, groups, models);

  return {
    options: resolved,
    groups: groups.map((group, index) => ({
      id: group.id,
      get patientIndexes() {
        return group.members();
      },
      resource: () => models.Group.render(index, 0),
    })),
    checkTypeFilter(type, query) {
      if (!EXPORTABLE_TYPES.includes(type)) return `resource type ${String(type)} is not exportable`;
      const compiled = compileTypeFilter(type, query, models[type].search);
      return compiled.ok ? undefined : compiled.message;
    },
    count(selection) {
      return plans.get(selection).index().total;
    },
    lines(selection, skip = 0, limit = Number.POSITIVE_INFINITY) {
      if (!Number.isSafeInteger(skip) || skip < 0) {
        throw new RangeError(`skip must be a non-negative integer, got ${skip}`);
      }
      if (!(Number.isSafeInteger(limit) || limit === Number.POSITIVE_INFINITY) || limit < 0) {
        throw new RangeError(`limit must be a non-negative integer or Infinity, got ${limit}`);
      }
      const plan = plans.get(selection);
      const render =
        selection.elements === undefined || selection.elements.length === 0
          ? plan.model.render
          : compose(subsetter(selection.elements), plan.model.render);
      return generateLines(plan, skip, limit, render);
    },
    deletions(selection) {
      const plan = plans.get(selection);
      return selection.since === undefined ? [] : deletedResources(cohort, plan);
    },
  };
}

function resolveOptions(options: DatasetOptions): Required<DatasetOptions> {
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(DATASET_DEFAULTS, key)) {
      throw new TypeError(
        `unknown dataset option "${key}" (expected ${Object.keys(DATASET_DEFAULTS).join(', ')})`,
      );
    }
  }
  const resolved = { ...DATASET_DEFAULTS, ...withoutUndefined(options) };
  if (!Number.isSafeInteger(resolved.seed)) {
    throw new RangeError(`dataset option "seed" must be an integer, got ${resolved.seed}`);
  }
  if (!Number.isSafeInteger(resolved.patientCount) || resolved.patientCount < 1) {
    throw new RangeError(
      `dataset option "patientCount" must be a positive integer, got ${resolved.patientCount}`,
    );
  }
  if (resolved.patientCount > MAX_PATIENT_COUNT) {
    throw new RangeError(
      `dataset option "patientCount" must be at most ${MAX_PATIENT_COUNT}, got ${resolved.patientCount}`,
    );
  }
  if (Number.isNaN(parseInstant(resolved.epoch))) {
    throw new RangeError(`dataset option "epoch" must be an ISO 8601 instant, got "${resolved.epoch}"`);
  }
  return Object.freeze(resolved);
}

function withoutUndefined(options: DatasetOptions): DatasetOptions {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

function createModels(
  cohort: Cohort,
  groups: readonly GroupDefinition[],
): Readonly<Record<ExportableType, TypeModel>> {
  return {
    Patient: patientModel(cohort),
    Encounter: encounterModel(cohort),
    Observation: observationModel(cohort),
    Condition: conditionModel(cohort),
    MedicationRequest: medicationRequestModel(cohort),
    AllergyIntolerance: allergyIntoleranceModel(cohort),
    Procedure: procedureModel(cohort),
    Immunization: immunizationModel(cohort),
    DocumentReference: documentReferenceModel(cohort),
    Practitioner: practitionerModel(cohort),
    Organization: organizationModel(cohort),
    Group: groupModel(groups),
  };
}

function compose(
  outer: (line: string) => string,
  inner: (owner: number, j: number) => string,
): (owner: number, j: number) => string {
  return (owner, j) => outer(inner(owner, j));
}

// ---------------------------------------------------------------- selection plans

/** Where the selection's resources are: the owners to visit and which of their records match. */
interface Plan {
  readonly model: TypeModel;
  /** Owner indexes to visit, ascending; undefined means all of 0..ownerCount-1. */
  readonly owners: Int32Array | undefined;
  /** Whether a record is selected; undefined means every record of every visited owner. */
  readonly match: ((owner: number, j: number) => boolean) | undefined;
  /** Selected patients, ascending, when the selection is patient-scoped. */
  readonly patients: Int32Array | undefined;
  /** The `_since` (exclusive) and `_until` (inclusive) window, infinite when not given. */
  readonly sinceMs: number;
  readonly untilMs: number;
  index(): SliceIndex;
}

/** The selection's size and the positions of every CHECKPOINT_EVERY-th resource. */
interface SliceIndex {
  readonly total: number;
  /** Pairs of (position in owners, record number j). */
  readonly checkpoints: Int32Array;
}

class PlanCache {
  private readonly plans = new Map<string, Plan>();
  private readonly patientLists = new Map<string, Int32Array>();

  constructor(
    private readonly cohort: Cohort,
    private readonly groups: readonly GroupDefinition[],
    private readonly models: Readonly<Record<ExportableType, TypeModel>>,
  ) {}

  get(selection: ResourceSelection): Plan {
    if (!EXPORTABLE_TYPES.includes(selection.type)) {
      throw new RangeError(`resource type ${String(selection.type)} is not exportable`);
    }
    const model = this.models[selection.type];
    const sinceMs = instantOf('since', selection.since, Number.NEGATIVE_INFINITY);
    const untilMs = instantOf('until', selection.until, Number.POSITIVE_INFINITY);
    const filters = (selection.typeFilters ?? []).map((query) => {
      const compiled = compileTypeFilter(selection.type, query, model.search);
      if (!compiled.ok) throw new RangeError(compiled.message);
      return compiled.predicate;
    });
    const patientsKey = selection.patientIndexes === undefined ? '*' : fingerprint(selection.patientIndexes);
    const key = [selection.type, sinceMs, untilMs, patientsKey, ...(selection.typeFilters ?? [])].join('\n');
    const cached = this.plans.get(key);
    if (cached !== undefined) return cached;

    const patients =
      selection.patientIndexes === undefined
        ? undefined
        : this.patientList(patientsKey, selection.patientIndexes);
    const plan = createPlan({
      model,
      owners: this.ownersOf(model, patients),
      match: matcher(model, sinceMs, untilMs, filters),
      patients,
      sinceMs,
      untilMs,
    });
    if (this.plans.size >= PLAN_CACHE_SIZE) this.plans.delete(this.plans.keys().next().value!);
    this.plans.set(key, plan);
    return plan;
  }

  private patientList(key: string, indexes: readonly number[]): Int32Array {
    let list = this.patientLists.get(key);
    if (list === undefined) {
      list = normalizeIndexes(indexes, this.cohort.patientCount);
      if (this.patientLists.size >= 8) this.patientLists.delete(this.patientLists.keys().next().value!);
      this.patientLists.set(key, list);
    }
    return list;
  }

  private ownersOf(model: TypeModel, patients: Int32Array | undefined): Int32Array | undefined {
    if (patients === undefined) return undefined;
    switch (model.scope) {
      case 'clinical':
      case 'patient':
        return patients;
      case 'practitioner':
        return referencedPractitioners(this.cohort, patients);
      case 'organization': {
        const organizations = new Uint8Array(this.cohort.organizationCount);
        for (const practitioner of referencedPractitioners(this.cohort, patients)) {
          organizations[this.cohort.organizationOf(practitioner)] = 1;
        }
        return indexesOf(organizations);
      }
      case 'group': {
        const groups = new Uint8Array(this.groups.length);
        this.groups.forEach((group, index) => {
          if (patients.some((patient) => group.contains(patient))) groups[index] = 1;
        });
        return indexesOf(groups);
      }
    }
  }
}

function instantOf(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const ms = parseInstant(value);
  if (Number.isNaN(ms)) throw new RangeError(`selection ${name} must be an ISO 8601 instant, got "${value}"`);
  return ms;
}

/** A cheap identity for a patient list (64 bits of FNV-1a), so that each file request reuses the plan. */
function fingerprint(indexes: readonly number[]): string {
  let a = 0x811c9dc5;
  let b = 0x01000193;
  for (const index of indexes) {
    a = Math.imul(a ^ index, 0x01000193);
    b = Math.imul(b ^ index, 0x5bd1e995) ^ (b >>> 15);
  }
  return `${indexes.length}:${(a >>> 0).toString(36)}:${(b >>> 0).toString(36)}`;
}

/** Ascending, without duplicates or indexes outside the cohort. */
function normalizeIndexes(indexes: readonly number[], count: number): Int32Array {
  const inRange = indexes.filter((index) => Number.isInteger(index) && index >= 0 && index < count);
  let ascending = true;
  for (let i = 1; i < inRange.length; i++) {
    if (inRange[i]! <= inRange[i - 1]!) {
      ascending = false;
      break;
    }
  }
  if (ascending) return Int32Array.from(inRange);
  const sorted = Int32Array.from(inRange).sort();
  return sorted.filter((index, i) => i === 0 || index !== sorted[i - 1]);
}

function indexesOf(flags: Uint8Array): Int32Array {
  const found: number[] = [];
  flags.forEach((flag, index) => {
    if (flag === 1) found.push(index);
  });
  return Int32Array.from(found);
}

/** Practitioners that the patients' resources reference: the GP always, the consultant if seen. */
function referencedPractitioners(cohort: Cohort, patients: Int32Array): Int32Array {
  const practitioners = new Uint8Array(cohort.practitionerCount);
  for (const patient of patients) {
    practitioners[cohort.generalPractitioner(patient)] = 1;
    if (cohort.seesConsultant(patient)) practitioners[cohort.consultant(patient)] = 1;
  }
  return indexesOf(practitioners);
}

/** `since` is exclusive and `until` inclusive, as the Bulk Data IG defines them; filters are OR-ed. */
function matcher(
  model: TypeModel,
  sinceMs: number,
  untilMs: number,
  filters: readonly ResourcePredicate[],
): Plan['match'] {
  if (sinceMs === Number.NEGATIVE_INFINITY && untilMs === Number.POSITIVE_INFINITY && filters.length === 0) {
    return undefined;
  }
  const lastUpdated = model.lastUpdated;
  return (owner, j) => {
    const ms = lastUpdated(owner, j);
    if (ms <= sinceMs || ms > untilMs) return false;
    if (filters.length === 0) return true;
    for (const filter of filters) {
      if (filter(owner, j, ms)) return true;
    }
    return false;
  };
}

function createPlan(parts: Omit<Plan, 'index'>): Plan {
  let built: SliceIndex | undefined;
  const plan: Plan = {
    ...parts,
    index: () => {
      built ??= buildIndex(plan);
      return built;
    },
  };
  return plan;
}

/** One pass over the selection's facts (no rendering) to count it and checkpoint it for slicing. */
function buildIndex(plan: Plan): SliceIndex {
  const { model, owners, match } = plan;
  const ownerCount = owners === undefined ? model.ownerCount : owners.length;
  const checkpoints: number[] = [];
  let total = 0;
  for (let position = 0; position < ownerCount; position++) {
    const owner = owners === undefined ? position : owners[position]!;
    const records = model.countOf(owner);
    for (let j = 0; j < records; j++) {
      if (match !== undefined && !match(owner, j)) continue;
      if (total % CHECKPOINT_EVERY === 0) checkpoints.push(position, j);
      total++;
    }
  }
  return { total, checkpoints: Int32Array.from(checkpoints) };
}

function* generateLines(
  plan: Plan,
  skip: number,
  limit: number,
  render: (owner: number, j: number) => string,
): Generator<string, void, undefined> {
  if (limit === 0) return;
  const { model, owners, match } = plan;
  const ownerCount = owners === undefined ? model.ownerCount : owners.length;
  let position = 0;
  let j = 0;
  let toSkip = skip;
  if (skip > 0) {
    const index = plan.index();
    if (skip >= index.total) return;
    const checkpoint = Math.floor(skip / CHECKPOINT_EVERY);
    position = index.checkpoints[2 * checkpoint]!;
    j = index.checkpoints[2 * checkpoint + 1]!;
    toSkip = skip - checkpoint * CHECKPOINT_EVERY;
  }
  let remaining = limit;
  for (; position < ownerCount; position++, j = 0) {
    const owner = owners === undefined ? position : owners[position]!;
    const records = model.countOf(owner);
    for (; j < records; j++) {
      if (match !== undefined && !match(owner, j)) continue;
      if (toSkip > 0) {
        toSkip--;
        continue;
      }
      yield render(owner, j);
      if (--remaining === 0) return;
    }
  }
}

// ---------------------------------------------------------------- deletions

/**
 * About 1% of each type was deleted at some instant of the history. A deleted resource has an
 * id no live resource has: the record after an owner's last one (`obs-42-<count>`), or an owner
 * index past the live ones (`pt-<patientCount + d>`). Patient-scoped selections only see the
 * deleted clinical records of their patients. `_typeFilter` does not apply: what was deleted is
 * no longer there to be filtered.
 */
function deletedResources(cohort: Cohort, plan: Plan): DeletedResource[] {
  const { model, patients, sinceMs, untilMs } = plan;
  const type = model.type;
  const salt = SALT.deletion + EXPORTABLE_TYPES.indexOf(type);
  const deleted: DeletedResource[] = [];
  const add = (d: number, id: () => string): void => {
    const ms = cohort.instantInHistory(salt, d, 1);
    if (ms > sinceMs && ms <= untilMs) deleted.push({ type, id: id(), lastUpdated: formatInstant(ms) });
  };
  if (model.scope === 'clinical') {
    const n = cohort.patientCount;
    const records = Math.min(n, Math.floor(n * meanPerPatient(type as ClinicalType) * DELETED_SHARE));
    const block = Math.floor(n / Math.max(1, records));
    for (let d = 0; d < records; d++) {
      const patient = d * block + (cohort.hash(salt, d) % block);
      if (patients !== undefined && !includes(patients, patient)) continue;
      add(d, () => model.id(patient, model.countOf(patient)));
    }
  } else if (patients === undefined && model.scope !== 'group') {
    const records = Math.max(1, Math.floor(model.ownerCount * DELETED_SHARE));
    for (let d = 0; d < records; d++) add(d, () => model.id(model.ownerCount + d, 0));
  }
  return deleted;
}

interface DeletedResource {
  type: ExportableType;
  id: string;
  lastUpdated: string;
}

/** Binary search in an ascending list. */
function includes(sorted: Int32Array, value: number): boolean {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const found = sorted[middle]!;
    if (found === value) return true;
    if (found < value) low = middle + 1;
    else high = middle - 1;
  }
  return false;
}
