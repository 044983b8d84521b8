/** What the dataset needs to know about one resource type, and the JSON fragments renderers share. */
import type { SearchParameters } from './search.js';
import type { ExportableType } from './types.js';
import type { Code } from './vocabulary.js';

/**
 * Whose records a type holds. `clinical` types have several records per patient; the others one
 * record per owner. Practitioner and Organization are outside the patient compartment.
 */
export type Scope = 'clinical' | 'patient' | 'practitioner' | 'organization' | 'group';

export interface TypeModel {
  readonly type: ExportableType;
  readonly scope: Scope;
  /** Owners are patients (clinical, patient), practitioners, organizations or groups. */
  readonly ownerCount: number;
  /** Records of an owner; the resource key is (owner, j) with j < countOf(owner). */
  countOf(owner: number): number;
  lastUpdated(owner: number, j: number): number;
  /** The resource as one line of compact JSON. */
  render(owner: number, j: number): string;
  id(owner: number, j: number): string;
  /** `_typeFilter` parameters besides `_lastUpdated`. */
  readonly search: SearchParameters;
}

export const ID_PREFIX: Readonly<Record<ExportableType, string>> = {
  Patient: 'pt',
  Encounter: 'enc',
  Observation: 'obs',
  Condition: 'cond',
  MedicationRequest: 'medrx',
  AllergyIntolerance: 'alg',
  Procedure: 'proc',
  Immunization: 'imm',
  DocumentReference: 'doc',
  Practitioner: 'pract',
  Organization: 'org',
  Group: 'group',
};

export function patientId(patient: number): string {
  return `pt-${patient}`;
}

/**
 * The patient's id in the EHR's own database (its MRN identifier's value), which some EHRs put in
 * Group member references instead of the FHIR logical id: reading `Patient/<it>` finds nothing.
 */
export function technicalPatientId(patient: number): string {
  return `M${10_000_000 + patient}`;
}

export function practitionerId(practitioner: number): string {
  return `pract-${practitioner}`;
}

export function organizationId(organization: number): string {
  return `org-${organization}`;
}

/** Id of a patient's j-th record of a clinical type, e.g. `obs-42-3`. */
export function clinicalId(type: ExportableType, patient: number, j: number): string {
  return `${ID_PREFIX[type]}-${patient}-${j}`;
}

export function codingJson(code: Code): string {
  return JSON.stringify({ system: code.system, code: code.code, display: code.display });
}

/** A CodeableConcept of codings only, as EHRs send statuses, categories and qualifiers. */
export function codedJson(codes: readonly Code[]): string {
  return `{"coding":[${codes.map(codingJson).join(',')}]}`;
}

/** A CodeableConcept with its codings and, as EHRs send it, the first display as `text`. */
export function conceptJson(codes: readonly Code[], text = codes[0]!.display): string {
  return `{"coding":[${codes.map(codingJson).join(',')}],"text":${JSON.stringify(text)}}`;
}

/** The tail of a `meta` object after `lastUpdated`: `,"profile":["<url>"]`. */
export function profileJson(url: string): string {
  return `,"profile":[${JSON.stringify(url)}]`;
}
