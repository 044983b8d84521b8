/**
 * Turns a profile's flat snapshot (generated data) into a tree the validator walks: each element with its
 * children and its slices, its invariants compiled to FHIRPath functions once.
 */
import fhirpath from 'fhirpath';
import r4model from 'fhirpath/fhir-context/r4';
import type { ConstraintData, ElementData, ElementType, ProfileData, RuleSetData } from './rule-data.js';

export type Compiled = (node: unknown, resource: unknown, type?: string) => unknown[];

export interface CompiledConstraint extends ConstraintData {
  readonly evaluate: Compiled;
  /**
   * dom-2, dom-3, dom-4, dom-5: every term is `contained.….empty()`, true when there is no contained
   * resource, which is nearly always; skipping them then saves four FHIRPath evaluations per resource.
   */
  readonly vacuousWithoutContained: boolean;
}

/** FHIR R4's DomainResource invariants on contained resources (each `contained.….empty()`, or dom-3's where). */
const ABOUT_CONTAINED = new Set(['dom-2', 'dom-3', 'dom-4', 'dom-5']);

export interface ElementRule {
  readonly data: ElementData;
  /** The JSON property name: `gender`; for a choice `value[x]`, the prefix `value`. */
  readonly name: string;
  readonly choice: boolean;
  readonly max: number;
  readonly types: readonly ElementType[];
  readonly children: ElementRule[];
  readonly slices: ElementRule[];
  readonly constraints: readonly CompiledConstraint[];
  /** Codes of the required binding, per system, when its value set is enumerable. */
  readonly valueSet?: ReadonlyMap<string, ReadonlySet<string>>;
  /** For a slice: the discriminator values a member must carry, resolved from the slice's elements. */
  readonly discriminators?: readonly {
    readonly type: string;
    readonly path: string;
    readonly value: unknown;
  }[];
}

export interface CompiledProfile {
  readonly data: ProfileData;
  readonly root: ElementRule;
  readonly mustSupport: readonly string[];
}

/** Invariants whose FHIRPath the `fhirpath` package cannot compile or evaluate; listed in docs/validation.md. */
export const UNEVALUATED_CONSTRAINTS = new Map<string, string>();

const compiledCache = new Map<string, Compiled>();
/** Functions whose result depends on more than the resource: not evaluable offline and synchronously. */
const NEEDS_OUTSIDE_DATA = /\b(resolve|memberOf|conformsTo|expand|lookup|validateVS|validateCS|subsumes)\(/;
type Fn = (node: unknown, vars: unknown) => unknown[];

function compileOnce(base: string, expression: string): Fn {
  // A resource-level constraint is compiled without a base: fhirpath then knows the node is the resource.
  const path = base.includes('.') ? { base, expression } : expression;
  return fhirpath.compile(path, r4model, {
    resolveInternalTypes: false,
    // dom-3 traces its unmatched contained ids: resource content, never to be logged.
    traceFn: () => {},
  }) as Fn;
}

/**
 * Compiled once per process. On a choice element (`Observation.effective[x]`) the base path names the
 * concrete type (`Observation.effectiveDateTime`) so that `$this is DateTime` sees the value's type; those
 * are compiled on first use of each type and cached.
 */
function compileConstraint(path: string, c: ConstraintData): Compiled | undefined {
  const key = `${path}\u0000${c.expression}`;
  const cached = compiledCache.get(key);
  if (cached) return cached;
  const needs = NEEDS_OUTSIDE_DATA.exec(c.expression);
  if (needs) {
    UNEVALUATED_CONSTRAINTS.set(
      c.key,
      `uses ${needs[1]}(), which needs other resources or a terminology server`,
    );
    return undefined;
  }
  let plain: Fn;
  try {
    plain = compileOnce(path, c.expression);
  } catch (error) {
    UNEVALUATED_CONSTRAINTS.set(c.key, `does not compile: ${(error as Error).message.split('\n')[0]}`);
    return undefined;
  }
  const perType = new Map<string, Fn>();
  const choice = path.endsWith('[x]');
  const compiled: Compiled = (node, resource, type) => {
    let fn = plain;
    if (choice && type) {
      fn =
        perType.get(type) ??
        compileOnce(path.replace('[x]', type.charAt(0).toUpperCase() + type.slice(1)), c.expression);
      perType.set(type, fn);
    }
    try {
      return fn(node, { resource, rootResource: resource });
    } catch {
      // Either the data makes it throw (a comparison of a malformed dateTime, which the datatype rule
      // reports) or fhirpath.js rejects the expression's shape on this data (dom-3's descendants().as(…) on
      // a collection): the invariant cannot be judged on this resource. Say so, without the error's text,
      // which quotes resource content.
      if (!UNEVALUATED_CONSTRAINTS.has(c.key)) {
        UNEVALUATED_CONSTRAINTS.set(c.key, 'fhirpath threw while evaluating it on some resources');
      }
      return [];
    }
  };
  compiledCache.set(key, compiled);
  return compiled;
}

function lastSegment(id: string): string {
  // Slice names in US Core hold no dots, so the id's last dot separates parent and child.
  return id.slice(id.lastIndexOf('.') + 1);
}

function maxOf(max: string): number {
  return max === '*' ? Number.POSITIVE_INFINITY : Number(max);
}

export function compileProfile(profile: ProfileData, ruleSet: RuleSetData): CompiledProfile {
  const byId = new Map<string, ElementRule>();
  let root: ElementRule | undefined;
  const mustSupport: string[] = [];
  for (const data of profile.elements) {
    const segment = lastSegment(data.id);
    const [elementName, sliceName] = segment.split(':') as [string, string | undefined];
    const choice = elementName.endsWith('[x]');
    const rule: ElementRule = {
      data,
      name: choice ? elementName.slice(0, -3) : elementName,
      choice,
      max: maxOf(data.max),
      types: data.types ?? [],
      children: [],
      slices: [],
      constraints: [],
    };
    const constraints: CompiledConstraint[] = [];
    // A slice repeats its sliced element's constraints; evaluate them once, on the element.
    const inherited = new Set(
      sliceName
        ? (byId.get(data.id.slice(0, data.id.lastIndexOf(':')))?.data.constraints ?? []).map((c) => c.key)
        : [],
    );
    for (const c of data.constraints ?? []) {
      if (inherited.has(c.key)) continue;
      const evaluate = compileConstraint(data.path, c);
      if (evaluate)
        constraints.push({
          ...c,
          evaluate,
          vacuousWithoutContained: ABOUT_CONTAINED.has(c.key) && c.expression.startsWith('contained.'),
        });
    }
    (rule as unknown as { constraints: CompiledConstraint[] }).constraints = constraints;
    if (data.binding) {
      const expansion = ruleSet.valueSets[data.binding];
      if (expansion) {
        (rule as { valueSet?: Map<string, Set<string>> }).valueSet = new Map(
          Object.entries(expansion).map(([system, codes]) => [system, new Set(codes)]),
        );
      }
    }
    if (data.mustSupport) mustSupport.push(data.id);
    byId.set(data.id, rule);
    if (!root) {
      root = rule;
      continue;
    }
    if (sliceName !== undefined) {
      const sliced = byId.get(data.id.slice(0, data.id.lastIndexOf(':')));
      sliced?.slices.push(rule);
    } else {
      const parent = byId.get(data.id.slice(0, data.id.lastIndexOf('.')));
      parent?.children.push(rule);
    }
  }
  if (!root) throw new Error(`profile ${profile.url} has no snapshot elements; regenerate the rule data`);
  // Discriminator values can only be read once a slice's own children are attached.
  for (const rule of byId.values()) {
    if (!rule.data.sliceName) continue;
    const sliced = byId.get(rule.data.id.slice(0, rule.data.id.lastIndexOf(':')));
    const discriminators = (sliced?.data.slicing?.discriminator ?? []).map((d) => ({
      type: d.type,
      path: d.path,
      value: discriminatorValue(rule, d),
    }));
    (rule as { discriminators?: unknown }).discriminators = discriminators;
  }
  return { data: profile, root, mustSupport };
}

/** What a member of the slice carries at the discriminator's path: a fixed/pattern value, a type, or a url. */
function discriminatorValue(slice: ElementRule, d: { type: string; path: string }): unknown {
  if (d.type === 'type') return slice.types.map((t) => t.code);
  let element: ElementRule | undefined = slice;
  if (d.path !== '$this') {
    for (const part of d.path.split('.')) element = element?.children.find((c) => c.name === part);
  }
  const value = element?.data.fixed ?? element?.data.pattern;
  if (value !== undefined) return value;
  // An extension slice names its extension by profile; the url child is not constrained in the snapshot.
  if (d.path === 'url') return slice.types[0]?.profile?.[0];
  return undefined;
}
