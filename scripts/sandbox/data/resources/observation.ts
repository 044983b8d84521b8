import { formatInstant, MINUTE_MS } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import {
  clinicalId,
  codedJson,
  conceptJson,
  patientId,
  practitionerId,
  profileJson,
  type TypeModel,
} from '../model.js';
import { Stream, weightedChoice } from '../random.js';
import { codeParameter } from '../search.js';
import {
  BLOOD_PRESSURE_COMPONENTS,
  INTERPRETATIONS,
  OBSERVATION_CATEGORY_DISPLAY,
  OBSERVATION_KINDS,
  OBSERVATION_STATUSES,
  type ObservationKind,
  type QuantityValue,
  SYSTEM,
} from '../vocabulary.js';

const STATUS_CODES = OBSERVATION_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(OBSERVATION_STATUSES.map((status) => status.weight));
const chooseKind = weightedChoice(OBSERVATION_KINDS.map((kind) => kind.weight));
const HBA1C = OBSERVATION_KINDS.findIndex((kind) => kind.codes[0]!.code === '4548-4');
const SMOKING_STATUS = OBSERVATION_KINDS.findIndex((kind) => kind.codes[0]!.code === '72166-2');
const FINAL = STATUS_CODES.indexOf('final');
/**
 * http://hl7.org/fhir/us/core/StructureDefinition/us-core-smokingstatus binds status (required) to
 * final | entered-in-error and makes value[x] 1..1: a smoking status is never preliminary, amended or
 * cancelled, and always has its answer.
 */
const SMOKING_STATUSES = new Set([FINAL, STATUS_CODES.indexOf('entered-in-error')]);
const NOT_PERFORMED = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/data-absent-reason',
    code: 'not-performed',
    display: 'Not Performed',
  },
]);
const INTERPRETATION = {
  normal: `,"interpretation":[${codedJson([INTERPRETATIONS.normal])}]`,
  high: `,"interpretation":[${codedJson([INTERPRETATIONS.high])}]`,
  low: `,"interpretation":[${codedJson([INTERPRETATIONS.low])}]`,
};
const SYSTOLIC = conceptJson([BLOOD_PRESSURE_COMPONENTS.systolic]);
const DIASTOLIC = conceptJson([BLOOD_PRESSURE_COMPONENTS.diastolic]);
/**
 * http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure: component 2..* with the
 * systolic and diastolic slices 1..1 even when nothing was measured; each then says why (vs-3).
 */
const BLOOD_PRESSURE_NOT_PERFORMED = `"component":[{"code":${SYSTOLIC},"dataAbsentReason":${NOT_PERFORMED}},{"code":${DIASTOLIC},"dataAbsentReason":${NOT_PERFORMED}}]`;

function quantityJson(value: number, unit: string): string {
  return `{"value":${value},"unit":"${unit}","system":"${SYSTEM.ucum}","code":"${unit}"}`;
}

function referenceRangeJson(value: QuantityValue): string {
  if (value.low === undefined && value.high === undefined) return '';
  const low = value.low === undefined ? '' : `"low":${quantityJson(value.low, value.unit)}`;
  const high = value.high === undefined ? '' : `"high":${quantityJson(value.high, value.unit)}`;
  return `,"referenceRange":[{${low}${low && high ? ',' : ''}${high}}]`;
}

/** The constant parts of each kind's JSON, rendered once. */
interface KindFragments {
  readonly profile: string;
  /** `"category":[…],"code":{…}` */
  readonly head: string;
  readonly unitTail: string;
  readonly referenceRange: string;
  readonly answers: readonly string[];
}

const FRAGMENTS: readonly KindFragments[] = OBSERVATION_KINDS.map((kind: ObservationKind) => {
  const category = codedJson([
    {
      system: SYSTEM.observationCategory,
      code: kind.category,
      display: OBSERVATION_CATEGORY_DISPLAY[kind.category],
    },
  ]);
  const value = kind.value;
  return {
    profile: profileJson(kind.profile),
    head: `"category":[${category}],"code":${conceptJson(kind.codes)}`,
    unitTail:
      value.kind === 'quantity'
        ? `,"unit":"${value.unit}","system":"${SYSTEM.ucum}","code":"${value.unit}"}`
        : '',
    referenceRange: value.kind === 'quantity' ? referenceRangeJson(value) : '',
    answers: value.kind === 'concept' ? value.answers.map((answer) => conceptJson([answer])) : [],
  };
});

const POWERS_OF_TEN = [1, 10, 100, 1000];

function between(stream: Stream, min: number, max: number, decimals: number): number {
  const scale = POWERS_OF_TEN[decimals]!;
  return Math.round((min + stream.next() * (max - min)) * scale) / scale;
}

export function observationModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const kindOf = (patient: number, j: number): number =>
    j === 0 && cohort.isDiabetic(patient) ? HBA1C : chooseKind(cohort.unit(SALT.observationKind, patient, j));
  const statusOf = (patient: number, j: number): number => {
    const status = chooseStatus(cohort.unit(SALT.observationStatus, patient, j));
    return kindOf(patient, j) !== SMOKING_STATUS || SMOKING_STATUSES.has(status) ? status : FINAL;
  };

  /** [effective, issued, lastUpdated]: measured during the visit, results later for labs. */
  const timing = (patient: number, j: number): [number, number, number] => {
    const h = cohort.hash(SALT.observationTiming, patient, j);
    const effective =
      cohort.encounterStart(patient, cohort.encounterOf(patient, j)) + (5 + (h % 56)) * MINUTE_MS;
    const laboratory = OBSERVATION_KINDS[kindOf(patient, j)]!.category === 'laboratory';
    const delayMinutes = laboratory ? 30 + ((h >>> 8) % 1440) : 1 + ((h >>> 8) % 10);
    const issued = effective + delayMinutes * MINUTE_MS;
    return [effective, issued, issued + ((h >>> 20) % 600) * 1000];
  };

  const valueJson = (kind: ObservationKind, fragments: KindFragments): string => {
    const value = kind.value;
    if (value.kind === 'concept') return `"valueCodeableConcept":${stream.pick(fragments.answers)}`;
    if (value.kind === 'blood-pressure') {
      const systolic = stream.between(100, 160);
      const diastolic = stream.between(60, Math.min(100, systolic - 30));
      return `"component":[{"code":${SYSTOLIC},"valueQuantity":${quantityJson(systolic, 'mm[Hg]')}},{"code":${DIASTOLIC},"valueQuantity":${quantityJson(diastolic, 'mm[Hg]')}}]`;
    }
    const measured = between(stream, value.min, value.max, value.decimals);
    const quantity = `"valueQuantity":{"value":${measured}${fragments.unitTail}`;
    if (fragments.referenceRange === '') return quantity;
    const interpretation =
      value.high !== undefined && measured > value.high
        ? INTERPRETATION.high
        : value.low !== undefined && measured < value.low
          ? INTERPRETATION.low
          : INTERPRETATION.normal;
    return `${quantity}${interpretation}${fragments.referenceRange}`;
  };

  const render = (patient: number, j: number): string => {
    stream.reset(cohort.hash(SALT.observationRender, patient, j));
    const kindIndex = kindOf(patient, j);
    const kind = OBSERVATION_KINDS[kindIndex]!;
    const fragments = FRAGMENTS[kindIndex]!;
    const status = STATUS_CODES[statusOf(patient, j)]!;
    const encounter = cohort.encounterOf(patient, j);
    const [effective, issued, lastUpdated] = timing(patient, j);
    const result =
      (status === 'cancelled' || status === 'entered-in-error') && kindIndex !== SMOKING_STATUS
        ? kind.value.kind === 'blood-pressure'
          ? BLOOD_PRESSURE_NOT_PERFORMED
          : `"dataAbsentReason":${NOT_PERFORMED}`
        : valueJson(kind, fragments);
    return `{"resourceType":"Observation","id":"${clinicalId('Observation', patient, j)}","meta":{"versionId":"1","lastUpdated":"${formatInstant(lastUpdated)}"${fragments.profile}},"status":"${status}",${fragments.head},"subject":{"reference":"Patient/${patientId(patient)}"},"encounter":{"reference":"Encounter/${clinicalId('Encounter', patient, encounter)}"},"effectiveDateTime":"${formatInstant(effective)}","issued":"${formatInstant(issued)}","performer":[{"reference":"Practitioner/${practitionerId(cohort.encounterPractitioner(patient, encounter))}"}],${result}}`;
  };

  return {
    type: 'Observation',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('Observation'),
    lastUpdated: (patient, j) => timing(patient, j)[2],
    render,
    id: (patient, j) => clinicalId('Observation', patient, j),
    search: {
      category: {
        domain: OBSERVATION_KINDS.map((kind) => [
          { system: SYSTEM.observationCategory, code: kind.category },
        ]),
        valueIndex: kindOf,
      },
      code: { domain: OBSERVATION_KINDS.map((kind) => kind.codes), valueIndex: kindOf },
      status: codeParameter(SYSTEM.observationStatus, STATUS_CODES, statusOf),
    },
  };
}
