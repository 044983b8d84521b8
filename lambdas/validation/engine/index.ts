/**
 * The US Core rule engine: one parsed resource in, its findings per applicable profile out. The rules are the
 * generated tables in lambdas/validation/us-core/<version>/ (scripts/validation/generate-rules.ts); the engine
 * holds no profile knowledge of its own, so a new US Core version is a data change.
 */
import type { ProfileValidation, ResourceValidation, ResourceValidator, ValidationIssue } from '../types.js';
import { type CompiledProfile, compileProfile } from './compile.js';
import {
  RULE_SETS,
  type RuleSetData,
  type SelectionData,
  type SelectorData,
  type UsCoreVersion,
} from './rule-data.js';
import { type Datatypes, ProfileRun } from './validate.js';

export { UNEVALUATED_CONSTRAINTS } from './compile.js';
export type { UsCoreVersion } from './rule-data.js';

type Json = Record<string, unknown>;

const validators = new Map<UsCoreVersion, ResourceValidator>();

/** Compiles the rule set once per process (per Lambda container) and reuses it. */
export function loadUsCoreValidator(version: UsCoreVersion = '6.1.0'): ResourceValidator {
  let validator = validators.get(version);
  if (!validator) {
    const load = RULE_SETS[version];
    if (!load) {
      throw new Error(
        `US Core ${version} has no rule tables; expected one of ${Object.keys(RULE_SETS).join(', ')}`,
      );
    }
    validator = new UsCoreValidator(load());
    validators.set(version, validator);
  }
  return validator;
}

/** Selector weights: a code says more than a category, a pattern more than a value set the code is in. */
const WEIGHT = { code: { pattern: 4, binding: 3 }, category: { pattern: 2, binding: 1 } } as const;

class UsCoreValidator implements ResourceValidator {
  readonly ruleSet: string;
  private readonly profiles = new Map<string, CompiledProfile>();
  private readonly selection: Record<string, SelectionData>;
  private readonly datatypes: Datatypes;

  constructor(data: RuleSetData) {
    this.ruleSet = data.provenance.package;
    this.selection = data.selection;
    const regexes = new Map<string, RegExp>();
    for (const [type, def] of Object.entries(data.primitives)) {
      // FHIR's regexes match the whole value.
      if (def.regex) regexes.set(type, new RegExp(`^(?:${def.regex})$`));
    }
    this.datatypes = { primitives: data.primitives, regexes, complex: data.complex };
    for (const profile of data.profiles) this.profiles.set(profile.url, compileProfile(profile, data));
  }

  validate(resource: unknown): ResourceValidation {
    if (typeof resource !== 'object' || resource === null || Array.isArray(resource)) {
      return {
        resourceType: 'Unknown',
        profiles: [],
        conformant: false,
      };
    }
    const r = resource as Json;
    const resourceType = typeof r.resourceType === 'string' ? r.resourceType : 'Unknown';
    const id = typeof r.id === 'string' ? r.id : undefined;
    const { applicable, warnings } = this.applicable(r, resourceType);
    const profiles: ProfileValidation[] = applicable.map(({ profile, claimed }, i) => {
      const run = new ProfileRun(profile, this.datatypes, r);
      run.run();
      // Profile-selection warnings belong to the first profile reported.
      const issues: ValidationIssue[] = i === 0 ? [...warnings, ...run.issues] : run.issues;
      return {
        profile: profile.data.url,
        claimed,
        issues,
        mustSupportPopulated: profile.mustSupport.filter((ms) => run.populated.has(ms)),
      };
    });
    const conformant = profiles.every((p) => p.issues.every((issue) => issue.severity !== 'error'));
    return id === undefined
      ? { resourceType, profiles, conformant }
      : { resourceType, id, profiles, conformant };
  }

  mustSupportElements(profile: string): readonly string[] {
    return this.profiles.get(profile.split('|')[0]!)?.mustSupport ?? [];
  }

  profileTitle(profile: string): string {
    return this.profiles.get(profile.split('|')[0]!)?.data.title ?? profile;
  }

  private applicable(
    r: Json,
    resourceType: string,
  ): { applicable: { profile: CompiledProfile; claimed: boolean }[]; warnings: ValidationIssue[] } {
    const warnings: ValidationIssue[] = [];
    const claimed: { profile: CompiledProfile; claimed: boolean }[] = [];
    const meta = r.meta as Json | undefined;
    const claims = Array.isArray(meta?.profile) ? (meta.profile as unknown[]) : [];
    claims.forEach((claim, i) => {
      if (typeof claim !== 'string') return;
      const profile = this.profiles.get(claim.split('|')[0]!);
      if (profile && profile.data.type === resourceType) {
        if (!claimed.some((c) => c.profile === profile)) claimed.push({ profile, claimed: true });
      } else if (!claim.startsWith('http://hl7.org/fhir/StructureDefinition/')) {
        warnings.push({
          severity: 'warning',
          rule: `profile:${resourceType}.meta.profile`,
          expression: `${resourceType}.meta.profile[${i}]`,
          message: profile
            ? `claims a US Core profile for ${profile.data.type}, not ${resourceType}; validated against the ${resourceType} default`
            : `claims a profile ${this.ruleSet} does not define; validated against the ${resourceType} default`,
        });
      }
    });
    if (claimed.length > 0) return { applicable: claimed, warnings };
    const selected = this.select(r, resourceType);
    return { applicable: selected ? [{ profile: selected, claimed: false }] : [], warnings };
  }

  /**
   * The profile for a resource that claims none: the candidate whose category and code selectors match best
   * (a pattern it misses counts against it), else the type's fallback (selection.json).
   */
  private select(r: Json, resourceType: string): CompiledProfile | undefined {
    const table = this.selection[resourceType];
    if (!table) return undefined;
    let best: string | undefined;
    let bestScore = 0;
    for (const candidate of table.candidates) {
      let score = 0;
      for (const part of ['code', 'category'] as const) {
        const selector = candidate[part];
        if (!selector) continue;
        if (matches(r[part], selector)) score += WEIGHT[part][selector.by];
        else if (selector.by === 'pattern') score -= 1;
      }
      if (score > bestScore) {
        best = candidate.profile;
        bestScore = score;
      }
    }
    return this.profiles.get(best ?? table.fallback ?? '');
  }
}

function matches(element: unknown, selector: SelectorData): boolean {
  const concepts = Array.isArray(element) ? element : [element];
  for (const concept of concepts) {
    const codings = (concept as Json | undefined)?.coding;
    if (!Array.isArray(codings)) continue;
    for (const coding of codings as Json[]) {
      if (selector.codes.some((c) => c.code === coding?.code && (!c.system || c.system === coding?.system)))
        return true;
    }
  }
  return false;
}
