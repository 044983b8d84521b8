import { DAY_MS, formatDate, formatInstant, MINUTE_MS, YEAR_MS } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import {
  clinicalId,
  codedJson,
  codingJson,
  conceptJson,
  patientId,
  practitionerId,
  profileJson,
  type TypeModel,
} from '../model.js';
import { Stream, weightedChoice } from '../random.js';
import { codeParameter } from '../search.js';
import {
  CONDITION_KINDS,
  MEDICATION_NAMES,
  MEDICATION_REQUEST_STATUSES,
  MEDICATIONS,
  type MedicationKind,
  SYSTEM,
} from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-medicationrequest');
const STATUS_CODES = MEDICATION_REQUEST_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(MEDICATION_REQUEST_STATUSES.map((status) => status.weight));
const KINDS: readonly MedicationKind[] = MEDICATION_NAMES.map((name) => MEDICATIONS[name]);
const KIND_INDEX = new Map(MEDICATION_NAMES.map((name, index) => [name, index]));
/** Without an indication on the problem list, a prescription is an analgesic. */
const UNINDICATED = [KIND_INDEX.get('acetaminophen')!, KIND_INDEX.get('ibuprofen')!];
const CONDITION_MEDICATIONS = CONDITION_KINDS.map((kind) =>
  kind.medications.map((name) => KIND_INDEX.get(name)!),
);
const OUTPATIENT = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/medicationrequest-category',
    code: 'outpatient',
    display: 'Outpatient',
  },
]);
const ORDERED = codedJson([
  { system: 'http://terminology.hl7.org/CodeSystem/dose-rate-type', code: 'ordered', display: 'Ordered' },
]);
const MEDICATION = KINDS.map((kind) => conceptJson([kind.code]));
const DOSAGE = KINDS.map(
  (kind) =>
    `{"sequence":1,"text":${JSON.stringify(kind.dosage)},"timing":{"repeat":{"frequency":${kind.perDay},"period":1,"periodUnit":"d"}}${kind.dosage.includes('as needed') ? ',"asNeededBoolean":true' : ''},"route":{"coding":[${codingJson(kind.route)}]},"doseAndRate":[{"type":${ORDERED},"doseQuantity":{"value":${kind.dose.value},"unit":"${kind.dose.unit}","system":"http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm","code":"${kind.dose.formCode}"}}]}`,
);
const SUPPLY = KINDS.map(
  (kind) =>
    `"quantity":{"value":${kind.dose.value * kind.perDay * kind.supplyDays},"unit":"${kind.dose.unit}"},"expectedSupplyDuration":{"value":${kind.supplyDays},"unit":"days","system":"${SYSTEM.ucum}","code":"d"}}`,
);

export function medicationRequestModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const conditionCount = cohort.counter('Condition');
  /** The Condition a prescription treats (j-th prescription, condition j mod count), or -1. */
  const indicationOf = (patient: number, j: number): number => {
    const conditions = conditionCount(patient);
    if (conditions === 0) return -1;
    const condition = j % conditions;
    return CONDITION_MEDICATIONS[cohort.conditionKind(patient, condition)]!.length === 0 ? -1 : condition;
  };
  const kindOf = (patient: number, j: number): number => {
    const h = cohort.hash(SALT.medicationKind, patient, j);
    const condition = indicationOf(patient, j);
    const options =
      condition < 0 ? UNINDICATED : CONDITION_MEDICATIONS[cohort.conditionKind(patient, condition)]!;
    return options[h % options.length]!;
  };
  const statusOf = (patient: number, j: number): number =>
    chooseStatus(cohort.unit(SALT.medicationStatus, patient, j));
  const authoredOn = (patient: number, j: number): number =>
    cohort.encounterStart(patient, cohort.encounterOf(patient, j)) +
    (15 + (cohort.hash(SALT.medicationTiming, patient, j) % 41)) * MINUTE_MS;
  const lastUpdated = (patient: number, j: number): number =>
    authoredOn(patient, j) + (cohort.hash(SALT.medicationTiming, patient, j + 64) % 300) * 1000;

  const render = (patient: number, j: number): string => {
    stream.reset(cohort.hash(SALT.medicationRender, patient, j));
    const kindIndex = kindOf(patient, j);
    const encounter = cohort.encounterOf(patient, j);
    const authored = authoredOn(patient, j);
    const condition = indicationOf(patient, j);
    const reason =
      condition < 0
        ? ''
        : `,"reasonReference":[{"reference":"Condition/${clinicalId('Condition', patient, condition)}"}]`;
    return `{"resourceType":"MedicationRequest","id":"${clinicalId('MedicationRequest', patient, j)}","meta":{"versionId":"${1 + stream.below(2)}","lastUpdated":"${formatInstant(lastUpdated(patient, j))}"${PROFILE}},"status":"${STATUS_CODES[statusOf(patient, j)]}","intent":"order","category":[${OUTPATIENT}],"medicationCodeableConcept":${MEDICATION[kindIndex]},"subject":{"reference":"Patient/${patientId(patient)}"},"encounter":{"reference":"Encounter/${clinicalId('Encounter', patient, encounter)}"},"authoredOn":"${formatInstant(authored)}","requester":{"reference":"Practitioner/${practitionerId(cohort.encounterPractitioner(patient, encounter))}"}${reason},"dosageInstruction":[${DOSAGE[kindIndex]}],"dispenseRequest":{"validityPeriod":{"start":"${formatDate(authored)}","end":"${formatDate(authored + YEAR_MS - DAY_MS)}"},"numberOfRepeatsAllowed":${stream.below(4)},${SUPPLY[kindIndex]}}`;
  };

  return {
    type: 'MedicationRequest',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('MedicationRequest'),
    lastUpdated,
    render,
    id: (patient, j) => clinicalId('MedicationRequest', patient, j),
    search: {
      status: codeParameter(SYSTEM.medicationRequestStatus, STATUS_CODES, statusOf),
      code: { domain: KINDS.map((kind) => [kind.code]), valueIndex: kindOf },
    },
  };
}
