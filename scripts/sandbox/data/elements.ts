/**
 * `_elements`: a resource reduced to the requested top-level elements. The Bulk Data IG has the
 * server keep the mandatory elements and mark the result with the SUBSETTED tag, so consumers do
 * not mistake a partial resource for the whole one.
 */

const MANDATORY = new Set(['resourceType', 'id', 'meta']);
export const SUBSETTED_TAG = Object.freeze({
  system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  code: 'SUBSETTED',
  display: 'subsetted',
});

/** A function reducing rendered lines to `elements` (names as in the resource, e.g. `code`). */
export function subsetter(elements: readonly string[]): (line: string) => string {
  const keep = new Set([...MANDATORY, ...elements]);
  return (line) => {
    const resource = JSON.parse(line) as Record<string, unknown>;
    const subset: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(resource)) {
      if (keep.has(name)) subset[name] = value;
    }
    const meta = (resource.meta ?? {}) as Record<string, unknown>;
    const tags = Array.isArray(meta.tag) ? meta.tag : [];
    subset.meta = { ...meta, tag: [...tags, SUBSETTED_TAG] };
    return JSON.stringify(subset);
  };
}
