/**
 * Contract between the sandbox's HTTP server and its synthetic data.
 * The sandbox shares no code with lambdas/: it must not agree with our bugs.
 */

/** Resource types the sandbox can export. */
export const EXPORTABLE_TYPES = [
  'Patient',
  'Encounter',
  'Observation',
  'Condition',
  'MedicationRequest',
  'AllergyIntolerance',
  'Procedure',
  'Immunization',
  'DocumentReference',
  'Practitioner',
  'Organization',
  'Group',
] as const;
export type ExportableType = (typeof EXPORTABLE_TYPES)[number];

/** Which resources a kick-off selects, already parsed and validated by the server. */
export interface ResourceSelection {
  readonly type: ExportableType;
  /** Only resources with meta.lastUpdated > since (ISO instant), when given. */
  readonly since?: string;
  /** Only resources with meta.lastUpdated <= until, when given. */
  readonly until?: string;
  /** Only resources in the compartment of these patient indexes (Group or `patient` parameter). */
  readonly patientIndexes?: readonly number[];
  /**
   * `_typeFilter` queries for this type, already split from `Type?query`.
   * Several = OR. Each is a URLSearchParams-style query string, e.g. `category=laboratory`.
   */
  readonly typeFilters?: readonly string[];
  /** `_elements` for this type (top-level element names); mandatory elements are always kept. */
  readonly elements?: readonly string[];
}

export interface DatasetOptions {
  /** Same seed and options, same bytes. @default 42 */
  readonly seed?: number;
  /** @default 1000 */
  readonly patientCount?: number;
  /** Instant the synthetic history ends at; lastUpdated values spread over the years before it. @default '2026-01-01T00:00:00Z' */
  readonly epoch?: string;
}

export interface Dataset {
  readonly options: Required<DatasetOptions>;
  /** Group ids that exist (at least one whole-cohort Group and a couple of smaller ones). */
  readonly groups: readonly {
    id: string;
    patientIndexes: readonly number[];
    /** The Group resource as exported and read (`GET Group/[id]`), members included. */
    resource(): string;
  }[];
  /** Returns an error message when a `_typeFilter` query is not supported, else undefined. */
  checkTypeFilter(type: ExportableType, query: string): string | undefined;
  /** Number of resources the selection yields (must equal the number of lines `lines()` yields). */
  count(selection: ResourceSelection): number;
  /**
   * The selection's resources, one compact JSON object per string, no newline, in a stable order.
   * `skip` resources are skipped first, then at most `limit` are yielded: files are slices of this.
   */
  lines(selection: ResourceSelection, skip?: number, limit?: number): Iterable<string>;
  /** Deleted resources (for `deleted[]` when `_since` is given): `{type, id, lastUpdated}`. */
  deletions(
    selection: ResourceSelection,
  ): readonly { type: ExportableType; id: string; lastUpdated: string }[];
}
