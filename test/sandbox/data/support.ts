import type { Dataset, ResourceSelection } from '../../../scripts/sandbox/data/types.js';

export interface Resource {
  readonly resourceType: string;
  readonly id: string;
  readonly meta: { readonly lastUpdated: string; readonly tag?: readonly { system: string; code: string }[] };
  readonly [element: string]: unknown;
}

export interface Coding {
  readonly system?: string;
  readonly code?: string;
}

export function linesOf(
  dataset: Dataset,
  selection: ResourceSelection,
  skip?: number,
  limit?: number,
): string[] {
  return [...dataset.lines(selection, skip, limit)];
}

export function resourcesOf(dataset: Dataset, selection: ResourceSelection): Resource[] {
  return linesOf(dataset, selection).map((line) => JSON.parse(line) as Resource);
}

export function idsOf(resources: readonly Resource[]): string[] {
  return resources.map((resource) => resource.id);
}

/** Every `reference` string anywhere in a resource. */
export function referencesIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(referencesIn);
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, inner]) =>
    key === 'reference' && typeof inner === 'string' ? [inner] : referencesIn(inner),
  );
}

/** The codings of a CodeableConcept or of a list of them. */
export function codingsOf(concept: unknown): Coding[] {
  if (Array.isArray(concept)) return concept.flatMap(codingsOf);
  const codings = (concept as { coding?: Coding[] } | undefined)?.coding;
  return codings ?? [];
}
