/**
 * The contract between the US Core rule engine (lambdas/validation/engine/…)
 * and the validation stage that runs it over an export (handlers, report).
 * A finding never carries an element's value: values are PHI, and findings
 * travel into reports, logs and events.
 */

/** The families of rules, as docs/validation.md lists them. */
export type RuleFamily =
  /** min ≥ 1 (and max) of an element or a slice */
  | 'cardinality'
  /** a required-strength binding to an enumerable value set */
  | 'binding'
  /** a fixed[x] value */
  | 'fixed'
  /** a pattern[x] value, including those that define slices (Observation.category) */
  | 'pattern'
  /** the resource types a Reference may point to */
  | 'reference'
  /** a profile's constraint, evaluated as FHIRPath */
  | 'invariant'
  /** base FHIR datatype sanity: date, dateTime, instant, code, id, uri, … */
  | 'datatype'
  /** which profile applies: a claimed profile the rules do not know, a resource no profile fits */
  | 'profile';

export interface ValidationIssue {
  readonly severity: 'error' | 'warning';
  /**
   * Stable within an IG version, and the key the report counts by:
   * `<family>:<element id or constraint key>`, e.g. `cardinality:Patient.identifier`,
   * `binding:Patient.gender`, `pattern:Observation.category:us-core`, `reference:Observation.subject`,
   * `invariant:us-core-6`, `datatype:Patient.birthDate`.
   */
  readonly rule: string;
  /** FHIRPath to the place in this resource: `Patient.name[0]`, `Observation.category`. */
  readonly expression: string;
  /** Names the rule and what was expected; never the value found. */
  readonly message: string;
}

export interface ProfileValidation {
  /** The profile's canonical URL, without `|version`. */
  readonly profile: string;
  /** Whether the resource claimed it in meta.profile, or the engine chose it for its type. */
  readonly claimed: boolean;
  readonly issues: readonly ValidationIssue[];
  /** The profile's must-support elements (ids as in mustSupportElements) that this resource populates. */
  readonly mustSupportPopulated: readonly string[];
}

export interface ResourceValidation {
  readonly resourceType: string;
  readonly id?: string;
  /** One per profile that applies; none for a type the IG has no profile for. */
  readonly profiles: readonly ProfileValidation[];
  /** No issue of severity `error` against any profile. */
  readonly conformant: boolean;
}

export interface ResourceValidator {
  /** e.g. `hl7.fhir.us.core#6.1.0`. */
  readonly ruleSet: string;
  /** Pure and synchronous: one parsed resource in, its findings out. */
  validate(resource: unknown): ResourceValidation;
  /** The profile's must-support element ids (StructureDefinition element ids), the coverage denominators. */
  mustSupportElements(profile: string): readonly string[];
  /** The profile's title, for reports. */
  profileTitle(profile: string): string;
}
