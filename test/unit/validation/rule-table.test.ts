/**
 * Table-driven from the rule data itself: for every profile, every cardinality, required-slice, binding,
 * fixed/pattern, reference and primitive-datatype rule the tables hold that the profile's fixture can reach,
 * the fixture passes it and one mutation of the fixture fails it with that rule id at that FHIRPath location.
 * Slices and choices in an element's path are followed (slice members by their discriminators' values).
 * Rules the fixture cannot reach (a parent the fixture lacks, an element that decides slice membership) are
 * counted, and the counts are held to floors so that coverage cannot silently shrink.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadUsCoreValidator } from '../../../lambdas/validation/engine/index.js';
import type { ElementData, ProfileData } from '../../../lambdas/validation/engine/rule-data.js';
import type { ResourceValidation } from '../../../lambdas/validation/types.js';
import datatypes from '../../../lambdas/validation/us-core/6.1.0/datatypes.json' with { type: 'json' };
import profilesFile from '../../../lambdas/validation/us-core/6.1.0/profiles.json' with { type: 'json' };
import selectionFile from '../../../lambdas/validation/us-core/6.1.0/selection.json' with { type: 'json' };
import valueSetsFile from '../../../lambdas/validation/us-core/6.1.0/valuesets.json' with { type: 'json' };

type Json = Record<string, unknown>;
const FIXTURES = join(import.meta.dirname, 'fixtures/us-core-6.1.0');
const profiles = profilesFile.profiles as unknown as ProfileData[];
const valueSets = valueSetsFile.valueSets as unknown as Record<string, Record<string, string[]>>;
const validator = loadUsCoreValidator('6.1.0');

const fixtures = new Map<string, Json>();
for (const file of readdirSync(FIXTURES).filter((f) => f.endsWith('.json'))) {
  const resource = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as Json;
  const claimed = ((resource.meta as Json).profile as string[])[0]!;
  fixtures.set(claimed, resource);
}

/** A valid and an invalid value per primitive type, per FHIR R4's datatype regexes and JSON types. */
const SAMPLES: Record<string, { valid: unknown; invalid: unknown }> = {
  boolean: { valid: true, invalid: 'true' },
  integer: { valid: 3, invalid: '3' },
  decimal: { valid: 1.5, invalid: '1.5' },
  positiveInt: { valid: 1, invalid: 0 },
  unsignedInt: { valid: 0, invalid: -1 },
  date: { valid: '2020-02-29', invalid: '2020-13-01' },
  dateTime: { valid: '2020-02-29T10:00:00Z', invalid: '2020-02-29T25:00:00Z' },
  instant: { valid: '2020-02-29T10:00:00.000Z', invalid: '2020-02-29' },
  time: { valid: '10:00:00', invalid: '25:00' },
  code: { valid: 'a-code', invalid: ' padded ' },
  id: { valid: 'an-id.1', invalid: 'not an id' },
  uri: { valid: 'urn:example:a', invalid: 'has space' },
  url: { valid: 'https://example.org/a', invalid: 'has space' },
  canonical: { valid: 'https://example.org/a', invalid: 'has space' },
  oid: { valid: 'urn:oid:1.2.3', invalid: 'urn:oid:9.9' },
  string: { valid: 'text', invalid: '' },
  markdown: { valid: 'text', invalid: '' },
  base64Binary: { valid: 'AAAA', invalid: '@@@@' },
};

interface Place {
  node: Json;
  expression: string;
}

/** FHIR's pattern semantics, restated here so that the test does not lean on the engine's. */
function contains(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    const list = Array.isArray(value) ? value : [value];
    return pattern.every((p) => list.some((v) => contains(v, p)));
  }
  if (pattern && typeof pattern === 'object') {
    if (!value || typeof value !== 'object') return false;
    return Object.entries(pattern).every(([k, p]) => contains((value as Json)[k], p));
  }
  return value === pattern;
}

function valuesAt(value: unknown, path: string): unknown[] {
  let current = [value];
  for (const part of path.split('.')) {
    current = current.flatMap((c) => {
      const x = c && typeof c === 'object' ? (c as Json)[part] : undefined;
      return Array.isArray(x) ? x : x === undefined ? [] : [x];
    });
  }
  return current;
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * The parent nodes an element id's path reaches in the resource, with their FHIRPath locations. A slice in
 * the path keeps the members its discriminators' fixed/pattern values (or extension URL) select; a choice
 * keeps its one typed value. Undefined when nothing is reached, or when the element defines slice
 * membership itself (mutating it would move the value out of the slice rather than break the rule).
 */
function parentsOf(
  resource: Json,
  element: ElementData,
  byId: Map<string, ElementData>,
): Place[] | undefined {
  const segments = element.id.split('.');
  let places: Place[] = [{ node: resource, expression: segments[0]! }];
  let id = segments[0]!;
  for (const segment of segments.slice(1, -1)) {
    id = `${id}.${segment}`;
    const [name, slice] = segment.split(':') as [string, string | undefined];
    const next: Place[] = [];
    for (const place of places) {
      if (name.endsWith('[x]')) {
        const base = name.slice(0, -3);
        const allowed = slice ? (byId.get(id)?.types ?? []).map((t) => capitalize(t.code)) : undefined;
        for (const [key, value] of Object.entries(place.node)) {
          const type = key.slice(base.length);
          if (!key.startsWith(base) || !/^[A-Z]/.test(type) || (allowed && !allowed.includes(type))) continue;
          if (value && typeof value === 'object' && !Array.isArray(value)) {
            // Only complex values have children: their type name is the key's suffix as it stands.
            next.push({ node: value as Json, expression: `${place.expression}.${base}.ofType(${type})` });
          }
        }
        continue;
      }
      const value = place.node[name];
      const items = Array.isArray(value) ? value : value === undefined ? [] : [value];
      items.forEach((item, i) => {
        if (!item || typeof item !== 'object') return;
        if (slice !== undefined && !isMember(item, id, byId)) return;
        next.push({
          node: item as Json,
          expression: Array.isArray(value)
            ? `${place.expression}.${name}[${i}]`
            : `${place.expression}.${name}`,
        });
      });
    }
    places = next;
    if (slice !== undefined && definesMembership(element.id, id, byId)) return undefined;
  }
  return places.length > 0 ? places : undefined;
}

function discriminatorsOf(sliceId: string, byId: Map<string, ElementData>) {
  return byId.get(sliceId.slice(0, sliceId.lastIndexOf(':')))?.slicing?.discriminator ?? [];
}

function isMember(item: unknown, sliceId: string, byId: Map<string, ElementData>): boolean {
  return discriminatorsOf(sliceId, byId).every((d) => {
    const at = byId.get(d.path === '$this' ? sliceId : `${sliceId}.${d.path}`);
    const wanted =
      at?.fixed ??
      at?.pattern ??
      (d.path === 'url' ? byId.get(sliceId)?.types?.[0]?.profile?.[0] : undefined);
    if (wanted === undefined) return false;
    return (
      valuesAt(item, d.path === '$this' ? '' : d.path).some((x) => contains(x, wanted)) ||
      (d.path === '$this' && contains(item, wanted))
    );
  });
}

function definesMembership(elementId: string, sliceId: string, byId: Map<string, ElementData>): boolean {
  // The element at a discriminator's path, anything under it, and anything on the way to it (VSCat's coding).
  return discriminatorsOf(sliceId, byId).some((d) => {
    if (d.path === '$this') return false;
    const at = `${sliceId}.${d.path}`;
    return elementId === at || elementId.startsWith(`${at}.`) || at.startsWith(`${elementId}.`);
  });
}

const leafName = (element: ElementData): string => element.id.split('.').pop()!.split(':')[0]!;
const repeats = (element: ElementData): boolean => element.max !== '1';
const typeCodes = (element: ElementData): string[] => (element.types ?? []).map((t) => t.code);

/** Deletes an element (a choice: every typed variant; a primitive: its `_name` extensions too). */
function remove(node: Json, name: string): void {
  if (name.endsWith('[x]')) {
    const base = name.slice(0, -3);
    for (const key of Object.keys(node)) {
      if (key.startsWith(base) && /^[A-Z]/.test(key.slice(base.length))) delete node[key];
    }
  } else {
    delete node[name];
    delete node[`_${name}`];
  }
}

interface Case {
  rule: string;
  expression: string;
  /** The resource that passes the rule, and the one that breaks it. */
  pass: Json;
  fail: Json;
}

function mutate(
  resource: Json,
  element: ElementData,
  byId: Map<string, ElementData>,
  change: (parent: Json, name: string) => void,
  all = false,
): Json {
  const copy = structuredClone(resource);
  const parents = parentsOf(copy, element, byId)!;
  for (const place of all ? parents : parents.slice(0, 1)) change(place.node, leafName(element));
  return copy;
}

function casesFor(profile: ProfileData, resource: Json): { cases: Case[]; unreachable: number } {
  const cases: Case[] = [];
  let unreachable = 0;
  const byId = new Map(profile.elements.map((e) => [e.id, e]));
  for (const element of profile.elements.slice(1)) {
    const parents = parentsOf(resource, element, byId);
    const name = leafName(element);
    const checkable =
      element.min >= 1 ||
      element.binding !== undefined ||
      element.fixed !== undefined ||
      element.pattern !== undefined ||
      typeCodes(element).some((t) => t === 'Reference' || SAMPLES[t]);
    if (!checkable) continue;
    if (!parents) {
      unreachable++;
      continue;
    }
    const where = `${parents[0]!.expression}.${name.replace('[x]', '')}`;
    const isSlice = element.sliceName !== undefined;

    if (element.min >= 1) {
      cases.push({
        rule: `cardinality:${element.id}`,
        expression: where,
        pass: resource,
        fail: mutate(resource, element, byId, remove, true),
      });
    }
    if (isSlice || name.endsWith('[x]')) continue;
    const types = typeCodes(element);
    const wrap = (value: unknown): unknown => (repeats(element) ? [value] : value);
    const at = repeats(element) ? `${where}[0]` : where;

    const expansion = element.binding ? valueSets[element.binding] : undefined;
    const bindable = types.length === 1 && ['code', 'Coding', 'CodeableConcept'].includes(types[0]!);
    if (expansion && bindable) {
      const [system, codes] = Object.entries(expansion)[0]!;
      const coded = (code: string): unknown =>
        types[0] === 'code'
          ? code
          : types[0] === 'Coding'
            ? { system, code }
            : { coding: [{ system, code }] };
      cases.push({
        rule: `binding:${element.id}`,
        expression: at,
        pass: mutate(resource, element, byId, (p, n) => {
          p[n] = wrap(coded(codes[0]!));
        }),
        fail: mutate(resource, element, byId, (p, n) => {
          p[n] = wrap(coded('not-in-the-value-set'));
        }),
      });
    }

    const pinned = element.fixed ?? element.pattern;
    const present = parents[0]!.node[name];
    if (pinned !== undefined && present !== undefined) {
      const family = element.fixed !== undefined ? 'fixed' : 'pattern';
      const broken =
        typeof pinned === 'string'
          ? `${pinned}-changed`
          : typeof pinned === 'number'
            ? pinned + 1
            : typeof pinned === 'boolean'
              ? !pinned
              : types[0] === 'Coding'
                ? { system: 'http://example.org/other', code: 'other' }
                : { coding: [{ system: 'http://example.org/other', code: 'other' }] };
      cases.push({
        rule: `${family}:${element.id}`,
        expression: Array.isArray(present) ? `${where}[0]` : where,
        pass: resource,
        fail: mutate(resource, element, byId, (p, n) => {
          p[n] = Array.isArray(present) ? [broken] : broken;
        }),
      });
    }

    const targets = (element.types ?? []).find((t) => t.code === 'Reference')?.targetTypes;
    if (types.length === 1 && targets && !targets.includes('Resource')) {
      const other = targets.includes('Basic') ? 'Substance' : 'Basic';
      cases.push({
        rule: `reference:${element.id}`,
        expression: at,
        pass: mutate(resource, element, byId, (p, n) => {
          p[n] = wrap({ reference: `${targets[0]}/valid-target` });
        }),
        fail: mutate(resource, element, byId, (p, n) => {
          p[n] = wrap({ reference: `${other}/wrong-target` });
        }),
      });
    }

    const sample = types.length === 1 ? SAMPLES[types[0]!] : undefined;
    if (sample) {
      cases.push({
        rule: `datatype:${element.id}`,
        expression: at,
        pass: mutate(resource, element, byId, (p, n) => {
          p[n] = wrap(sample.valid);
        }),
        fail: mutate(resource, element, byId, (p, n) => {
          p[n] = wrap(sample.invalid);
        }),
      });
    }
  }
  return { cases, unreachable };
}

const rulesOf = (result: ResourceValidation): string[] =>
  result.profiles.flatMap((p) => p.issues.map((i) => i.rule));

describe('the US Core 6.1.0 rule tables', () => {
  it('name their origin first: IG package, canonical URLs, input hashes and generator', () => {
    for (const file of [profilesFile, valueSetsFile, datatypes, selectionFile]) {
      expect(Object.keys(file)[0]).toBe('provenance');
      expect(file.provenance.package).toBe('hl7.fhir.us.core#6.1.0');
      expect(file.provenance.generator).toBe('scripts/validation/generate-rules.ts');
      expect(file.provenance.profiles).toEqual(profiles.map((p) => p.url));
      for (const hash of Object.values(file.provenance.inputs)) expect(hash).toMatch(/^[0-9a-f]{64}$/);
    }
    expect(valueSetsFile.skipped.map((s) => s.valueSet)).toEqual([
      'http://hl7.org/fhir/ValueSet/mimetypes',
      'http://hl7.org/fhir/us/core/ValueSet/us-core-documentreference-type',
    ]);
  });

  it('have a conformant fixture for every profile', () => {
    expect([...fixtures.keys()].sort()).toEqual(profiles.map((p) => p.url).sort());
  });
});

let total = 0;
let unreachableTotal = 0;
for (const profile of profiles) {
  const resource = fixtures.get(profile.url)!;
  const { cases, unreachable } = casesFor(profile, resource);
  total += cases.length;
  unreachableTotal += unreachable;
  describe(profile.id, () => {
    it('passes its conformant fixture with no error, against the claimed profile', () => {
      const result = validator.validate(resource);
      expect(result.profiles.map((p) => [p.profile, p.claimed])).toEqual([[profile.url, true]]);
      expect(result.profiles[0]!.issues.filter((i) => i.severity === 'error')).toEqual([]);
      expect(result.conformant).toBe(true);
    });
    it.each(cases.map((c) => [c.rule, c] as const))('%s', (_rule, c) => {
      expect(rulesOf(validator.validate(c.pass))).not.toContain(c.rule);
      const failed = validator.validate(c.fail);
      const issues = failed.profiles.flatMap((p) => p.issues).filter((i) => i.rule === c.rule);
      expect(issues.map((i) => i.expression)).toContain(c.expression);
      expect(issues.every((i) => i.severity === 'error')).toBe(true);
      expect(failed.conformant).toBe(false);
    });
  });
}

describe('coverage of the table', () => {
  it('reaches the bulk of the checkable rules', () => {
    // Floors measured on US Core 6.1.0; a drop means rules stopped being tested.
    // (1,397 cases. 289 rules are not reached: under backbone elements the fixtures leave out —
    // Observation.referenceRange, a component outside the component profiles — or elements that decide slice
    // membership, like VSCat's coding, whose removal is the slice's cardinality finding instead.)
    expect(total).toBeGreaterThanOrEqual(1397);
    expect(unreachableTotal).toBeLessThanOrEqual(289);
  });
});
