/**
 * Walks one resource against one compiled profile. Findings name the rule and what was expected; they never
 * carry the value found (values are PHI).
 */
import type { ValidationIssue } from '../types.js';
import type { CompiledProfile, ElementRule } from './compile.js';
import type { RuleSetData } from './rule-data.js';

type Json = Record<string, unknown>;
interface Located {
  readonly value: unknown;
  readonly expression: string;
  /** The concrete type of a choice element's value: `Quantity` for valueQuantity. */
  readonly type?: string;
}

export interface Datatypes {
  readonly primitives: RuleSetData['primitives'];
  readonly regexes: ReadonlyMap<string, RegExp>;
  readonly complex: RuleSetData['complex'];
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
const isPrimitive = (type: string): boolean => /^[a-z]/.test(type);

export class ProfileRun {
  readonly issues: ValidationIssue[] = [];
  readonly populated = new Set<string>();

  constructor(
    private readonly profile: CompiledProfile,
    private readonly datatypes: Datatypes,
    private readonly resource: Json,
  ) {}

  run(): void {
    const root = this.profile.root;
    this.checkValue(root, { value: this.resource, expression: root.data.path });
  }

  private issue(severity: 'error' | 'warning', rule: string, expression: string, message: string): void {
    this.issues.push({ severity, rule, expression, message });
  }

  /** Adds one JSON property's value(s) to `out`: arrays element by element, with their index. */
  private static collect(out: Located[], raw: unknown, expression: string, type?: string): void {
    if (Array.isArray(raw)) {
      for (let i = 0; i < raw.length; i++) {
        if (raw[i] !== null) out.push({ value: raw[i], expression: `${expression}[${i}]`, type });
      }
    } else if (raw !== undefined && raw !== null) {
      out.push({ value: raw, expression, type });
    }
  }

  /** The values of `rule` inside `parent`, each with its FHIRPath location. */
  private valuesOf(rule: ElementRule, parent: Json, parentExpression: string): Located[] {
    const out: Located[] = [];
    const push = (raw: unknown, name: string, type?: string): void =>
      ProfileRun.collect(out, raw, `${parentExpression}.${name}`, type);
    if (!rule.choice) {
      ProfileRun.collect(out, parent[rule.name], `${parentExpression}.${rule.name}`);
      // A primitive with only extensions (`_questionnaire`) is present; it has no value to check.
      const shadow = parent[`_${rule.name}`];
      if (out.length === 0 && shadow !== undefined && shadow !== null) {
        const count = Array.isArray(shadow) ? shadow.length : 1;
        for (let i = 0; i < count; i++)
          out.push({ value: undefined, expression: `${parentExpression}.${rule.name}` });
      }
      return out;
    }
    for (const key of Object.keys(parent)) {
      if (!key.startsWith(rule.name) || key.length === rule.name.length) continue;
      const suffix = key.slice(rule.name.length);
      if (suffix.charAt(0) !== suffix.charAt(0).toUpperCase()) continue;
      const type =
        rule.types.find((t) => capitalize(t.code) === suffix)?.code ??
        (this.datatypes.primitives[suffix.charAt(0).toLowerCase() + suffix.slice(1)]
          ? suffix.charAt(0).toLowerCase() + suffix.slice(1)
          : suffix);
      push(parent[key], `${rule.name}.ofType(${type})`, type);
      // A choice element holds one value; the name is the FHIRPath ofType, not the JSON key.
      const last = out[out.length - 1];
      if (last && !rule.types.some((t) => t.code === type) && rule.types.length > 0) {
        out.pop();
        this.issue(
          'error',
          `datatype:${rule.data.id}`,
          last.expression,
          `${rule.data.id} allows ${rule.types.map((t) => t.code).join(', ')}; found another type`,
        );
      }
    }
    return out;
  }

  private checkElement(rule: ElementRule, parent: Json, parentExpression: string): void {
    const values = this.valuesOf(rule, parent, parentExpression);
    const where = `${parentExpression}.${rule.name}`;
    this.cardinality(rule, values.length, where);
    if (values.length > 0 && rule.data.mustSupport) this.populated.add(rule.data.id);
    for (const v of values) this.checkValue(rule, v);
    for (const slice of rule.slices) {
      const members = values.filter((v) => matchesSlice(slice, v));
      this.cardinality(slice, members.length, where);
      if (members.length > 0 && slice.data.mustSupport) this.populated.add(slice.data.id);
      for (const m of members) this.checkValue(slice, m, true);
    }
  }

  private cardinality(rule: ElementRule, count: number, where: string): void {
    const { id, min, max } = rule.data;
    if (count < min) {
      this.issue('error', `cardinality:${id}`, where, `${id} is required (min ${min}); found ${count}`);
    } else if (count > rule.max) {
      this.issue('error', `cardinality:${id}`, where, `${id} allows at most ${max}; found ${count}`);
    }
  }

  private checkValue(rule: ElementRule, v: Located, asSlice = false): void {
    if (v.value === undefined) return;
    const type = v.type ?? (rule.types.length === 1 ? rule.types[0]!.code : undefined);
    const { data } = rule;
    if (type && isPrimitive(type)) this.primitive(type, data.id, v);
    if (data.fixed !== undefined && !deepEqual(v.value, data.fixed)) {
      this.issue(
        'error',
        `fixed:${data.id}`,
        v.expression,
        `${data.id} must equal the profile's fixed value`,
      );
    }
    // A slice's pattern is what put the value in the slice; checking it again would only repeat membership.
    if (data.pattern !== undefined && !asSlice && !containsPattern(v.value, data.pattern)) {
      this.issue(
        'error',
        `pattern:${data.id}`,
        v.expression,
        `${data.id} must match the profile's pattern value`,
      );
    }
    if (rule.valueSet && !inValueSet(v.value, type, rule.valueSet)) {
      this.issue(
        'error',
        `binding:${data.id}`,
        v.expression,
        `${data.id} must hold a code from ${data.binding} (required binding)`,
      );
    }
    if (type === 'Reference') this.reference(rule, v);
    for (const c of rule.constraints) {
      if (c.vacuousWithoutContained && this.resource.contained === undefined) continue;
      const result = c.evaluate(v.value, this.resource, type);
      if (result.length === 1 && result[0] === false) {
        this.issue(c.severity, `invariant:${c.key}`, v.expression, `${c.key}: ${c.human}`);
      }
    }
    if (!isObject(v.value)) return;
    if (rule.children.length > 0) {
      for (const child of rule.children) this.checkElement(child, v.value, v.expression);
    } else if (type && !isPrimitive(type)) {
      this.complex(type, data.id, v.value, v.expression, 0);
    }
  }

  private primitive(type: string, id: string, v: Located): void {
    const def = this.datatypes.primitives[type];
    if (!def) return;
    const value = v.value;
    const jsonOk =
      def.json === 'boolean'
        ? typeof value === 'boolean'
        : def.json === 'number'
          ? typeof value === 'number'
          : typeof value === 'string';
    const regex = this.datatypes.regexes.get(type);
    if (!jsonOk || (regex && !regex.test(String(value)))) {
      this.issue('error', `datatype:${id}`, v.expression, `${id} must be a valid FHIR ${type}`);
    }
  }

  /** Base-FHIR datatype sanity inside complex types the profile does not expand (HumanName, Period, …). */
  private complex(type: string, id: string, value: Json, expression: string, depth: number): void {
    const children = this.datatypes.complex[type];
    if (!children || depth > 3) return;
    for (const child of children) {
      const childType = child.types.length === 1 ? child.types[0]! : undefined;
      if (!childType || childType === 'Extension') continue;
      const raw = value[child.name];
      if (raw === undefined || raw === null) continue;
      const list = Array.isArray(raw) ? raw : [raw];
      for (let i = 0; i < list.length; i++) {
        const item = list[i];
        const at = `${expression}.${child.name}${Array.isArray(raw) ? `[${i}]` : ''}`;
        const childId = `${id}.${child.name}`;
        if (isPrimitive(childType)) this.primitive(childType, childId, { value: item, expression: at });
        else if (isObject(item)) this.complex(childType, childId, item, at, depth + 1);
      }
    }
  }

  private reference(rule: ElementRule, v: Located): void {
    const allowed = rule.types.find((t) => t.code === 'Reference')?.targetTypes;
    if (!allowed || allowed.includes('Resource') || !isObject(v.value)) return;
    const found = referencedType(v.value, this.resource);
    if (found === undefined) return;
    if (found === null || !allowed.includes(found)) {
      this.issue(
        'error',
        `reference:${rule.data.id}`,
        v.expression,
        found === null
          ? `${rule.data.id} refers to a contained resource that is not in contained`
          : `${rule.data.id} must refer to ${allowed.join(' | ')}`,
      );
    }
  }
}

/**
 * The type a Reference points to: from `type`, a `#id` in contained (null when absent), or the relative or
 * absolute literal URL; undefined when it cannot tell (urn:uuid:, identifier or display only), which passes.
 */
export function referencedType(reference: Json, resource: Json): string | null | undefined {
  const literal = reference.reference;
  if (typeof literal !== 'string') return typeof reference.type === 'string' ? reference.type : undefined;
  if (literal.startsWith('#')) {
    const contained = Array.isArray(resource.contained) ? (resource.contained as Json[]) : [];
    const target = contained.find((c) => isObject(c) && `#${c.id}` === literal);
    return target ? (target.resourceType as string) : null;
  }
  if (literal.startsWith('urn:')) return typeof reference.type === 'string' ? reference.type : undefined;
  const parts = literal.split('?')[0]!.split('/');
  const history = parts.lastIndexOf('_history');
  const end = history > 0 ? history : parts.length;
  const type = parts[end - 2];
  return type && /^[A-Z][A-Za-z]+$/.test(type) ? type : undefined;
}

export function matchesSlice(slice: ElementRule, v: Located): boolean {
  for (const d of slice.discriminators ?? []) {
    if (d.type === 'type') {
      if (!v.type || !(d.value as string[]).includes(v.type)) return false;
      continue;
    }
    const at = d.path === '$this' ? [v.value] : valuesAtPath(v.value, d.path);
    if (d.value === undefined) {
      // A slice defined by a required binding (US Core's category:us-core): membership is the value set.
      const bound = d.path === '$this' ? slice.valueSet : undefined;
      if (!bound || !at.some((x) => inValueSet(x, undefined, bound))) return false;
      continue;
    }
    if (!at.some((x) => (d.type === 'value' ? deepEqual(x, d.value) : containsPattern(x, d.value)))) {
      // A value discriminator on a pattern-constrained element matches by pattern, as FHIR allows.
      if (!(d.type === 'value' && at.some((x) => containsPattern(x, d.value)))) return false;
    }
  }
  return true;
}

function valuesAtPath(value: unknown, path: string): unknown[] {
  let current: unknown[] = [value];
  for (const part of path.split('.')) {
    const next: unknown[] = [];
    for (const c of current) {
      if (!isObject(c)) continue;
      const x = c[part];
      if (Array.isArray(x)) next.push(...x);
      else if (x !== undefined) next.push(x);
    }
    current = next;
  }
  return current;
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(b);
    return keys.length === Object.keys(a).length && keys.every((k) => deepEqual(a[k], b[k]));
  }
  return false;
}

/** FHIR pattern[x]: every property of the pattern is in the value; a pattern array item matches some item. */
export function containsPattern(value: unknown, pattern: unknown): boolean {
  if (Array.isArray(pattern)) {
    const list = Array.isArray(value) ? value : [value];
    return pattern.every((p) => list.some((v) => containsPattern(v, p)));
  }
  if (isObject(pattern)) {
    if (!isObject(value)) return false;
    return Object.keys(pattern).every((k) => containsPattern(value[k], pattern[k]));
  }
  return value === pattern;
}

/** FHIR's required binding: a code in the set; a Coding in it; a CodeableConcept with at least one coding in it. */
export function inValueSet(
  value: unknown,
  type: string | undefined,
  valueSet: ReadonlyMap<string, ReadonlySet<string>>,
): boolean {
  const coding = (c: unknown): boolean =>
    isObject(c) &&
    typeof c.code === 'string' &&
    typeof c.system === 'string' &&
    !!valueSet.get(c.system)?.has(c.code);
  if (typeof value === 'string') {
    for (const codes of valueSet.values()) if (codes.has(value)) return true;
    return false;
  }
  if (type === 'Coding') return coding(value);
  if (isObject(value) && (type === 'CodeableConcept' || 'coding' in value || 'text' in value)) {
    return Array.isArray(value.coding) && value.coding.some(coding);
  }
  // Quantity units and the like: the set binds a code inside the value, which this engine does not resolve.
  return true;
}
