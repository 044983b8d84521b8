/**
 * The shapes of the generated rule tables (lambdas/validation/us-core/<version>/*.json, written by
 * scripts/validation/generate-rules.ts) and the registry of the versions this build carries.
 */
import datatypes610 from '../us-core/6.1.0/datatypes.json' with { type: 'json' };
import profiles610 from '../us-core/6.1.0/profiles.json' with { type: 'json' };
import selection610 from '../us-core/6.1.0/selection.json' with { type: 'json' };
import valueSets610 from '../us-core/6.1.0/valuesets.json' with { type: 'json' };

export interface Provenance {
  readonly generator: string;
  /** e.g. `hl7.fhir.us.core#6.1.0` */
  readonly package: string;
  readonly canonical: string;
  readonly inputs: Record<string, string>;
  readonly profiles: readonly string[];
}

export interface ElementType {
  readonly code: string;
  readonly profile?: readonly string[];
  /** Resource types the targetProfiles resolve to (`Resource`: any). */
  readonly targetTypes?: readonly string[];
}

export interface ConstraintData {
  readonly key: string;
  readonly severity: 'error' | 'warning';
  readonly human: string;
  readonly expression: string;
}

export interface ElementData {
  readonly id: string;
  readonly path: string;
  readonly min: number;
  readonly max: string;
  readonly sliceName?: string;
  readonly types?: readonly ElementType[];
  readonly mustSupport?: boolean;
  readonly fixed?: unknown;
  readonly pattern?: unknown;
  /** Canonical URL of a required-strength binding's value set. */
  readonly binding?: string;
  readonly constraints?: readonly ConstraintData[];
  readonly slicing?: {
    readonly discriminator: readonly { type: string; path: string }[];
    readonly rules: string;
  };
}

export interface ProfileData {
  readonly url: string;
  readonly id: string;
  readonly title: string;
  readonly type: string;
  readonly elements: readonly ElementData[];
}

export interface SelectorData {
  readonly by: 'pattern' | 'binding';
  readonly codes: readonly { readonly system: string; readonly code: string }[];
}

export interface SelectionData {
  readonly fallback?: string;
  readonly candidates: readonly {
    readonly profile: string;
    readonly category?: SelectorData;
    readonly code?: SelectorData;
  }[];
}

export interface RuleSetData {
  readonly provenance: Provenance;
  readonly profiles: readonly ProfileData[];
  /** Enumerated value sets: system → codes. */
  readonly valueSets: Record<string, Record<string, readonly string[]>>;
  readonly primitives: Record<
    string,
    { readonly regex?: string; readonly json: 'string' | 'number' | 'boolean' }
  >;
  readonly complex: Record<
    string,
    readonly { readonly name: string; readonly types: readonly string[]; readonly max: string }[]
  >;
  readonly selection: Record<string, SelectionData>;
}

export type UsCoreVersion = '6.1.0';

/** A new US Core version: generate its folder, then add one entry here. */
export const RULE_SETS: Record<UsCoreVersion, () => RuleSetData> = {
  '6.1.0': () => ({
    provenance: profiles610.provenance,
    profiles: profiles610.profiles as unknown as ProfileData[],
    valueSets: valueSets610.valueSets as unknown as RuleSetData['valueSets'],
    primitives: datatypes610.primitives as unknown as RuleSetData['primitives'],
    complex: datatypes610.complex as unknown as RuleSetData['complex'],
    selection: selection610.selection as unknown as RuleSetData['selection'],
  }),
};
