/**
 * Deterministic FHIR-shaped NDJSON for tests and the benchmark: same
 * arguments, same bytes. Resources look like real Patients (nested objects,
 * arrays, numbers, booleans, escapes, non-ASCII names) so that validation
 * costs what it costs on real files.
 */

/** mulberry32: tiny, fast and good enough to vary test data. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const GIVEN = ['Ana', 'Björn', 'Chloé', 'Dmitri', 'Eun-ji', 'François', 'Günther', 'Hélène', 'Ivan', 'José'];
const FAMILY = ['García', 'Müller', "O'Brien", 'Nguyễn', 'Smith', 'Søren', 'Łukasz', 'Zhang', 'Kowalski'];
const CITY = ['Boston', 'Zürich', 'São Paulo', 'Kraków', 'Seattle', 'Montréal'];

/** One Patient resource as compact JSON (no newline). */
export function patientLine(index: number, seed = 7): string {
  const random = seededRandom(seed * 1_000_003 + index);
  const pick = <T>(values: readonly T[]): T => values[Math.floor(random() * values.length)]!;
  const names = Array.from({ length: 1 + Math.floor(random() * 2) }, () => ({
    use: pick(['official', 'usual', 'nickname']),
    family: pick(FAMILY),
    given: [pick(GIVEN), pick(GIVEN)],
  }));
  const resource = {
    resourceType: 'Patient',
    id: `pt-${index}`,
    meta: { versionId: String(1 + Math.floor(random() * 9)), lastUpdated: '2025-06-01T12:00:00.000Z' },
    text: {
      status: 'generated',
      div: `<div xmlns="http://www.w3.org/1999/xhtml">Patient \\ "${index}"</div>`,
    },
    extension: [
      {
        url: 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex',
        valueCode: pick(['F', 'M', 'UNK']),
      },
    ],
    identifier: [
      { system: 'http://hospital.example.org/mrn', value: `MRN${(random() * 1e9).toFixed(0)}` },
      { system: 'http://hl7.org/fhir/sid/us-ssn', value: `999-${index % 100}-${index % 10000}` },
    ],
    active: random() > 0.1,
    name: names,
    telecom: [{ system: 'phone', value: `555-${String(index % 10000).padStart(4, '0')}`, use: 'home' }],
    gender: pick(['female', 'male', 'other', 'unknown']),
    birthDate: `19${10 + Math.floor(random() * 89)}-0${1 + Math.floor(random() * 9)}-1${Math.floor(random() * 9)}`,
    address: [
      {
        line: [`${Math.floor(random() * 9999)} Main St`, 'Apt 4\t"B"'],
        city: pick(CITY),
        postalCode: String(10000 + Math.floor(random() * 89999)),
        country: 'US',
        period: { start: '2001-01-01' },
      },
    ],
    multipleBirthInteger: Math.floor(random() * 3),
    extensionWeight: { value: Number((random() * 120).toFixed(3)), unit: 'kg', exponent: -1.5e-3 },
  };
  return JSON.stringify(resource);
}

/** `count` Patient lines, each ending in `\n`. */
export function patientNdjson(count: number, seed = 7, firstIndex = 0): Buffer {
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(`${patientLine(firstIndex + i, seed)}\n`);
  return Buffer.from(parts.join(''), 'utf8');
}
