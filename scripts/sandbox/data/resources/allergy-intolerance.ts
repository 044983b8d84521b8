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
import { ALLERGY_CLINICAL_STATUSES, ALLERGY_KINDS, SYSTEM } from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-allergyintolerance');
const STATUS_CODES = ALLERGY_CLINICAL_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(ALLERGY_CLINICAL_STATUSES.map((status) => status.weight));
const CLINICAL_STATUS = STATUS_CODES.map((code) =>
  codedJson([{ system: SYSTEM.allergyClinical, code, display: code[0]!.toUpperCase() + code.slice(1) }]),
);
const CONFIRMED = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification',
    code: 'confirmed',
    display: 'Confirmed',
  },
]);
const CODES = ALLERGY_KINDS.map((kind) => conceptJson([kind.code]));
const REACTIONS = ALLERGY_KINDS.map((kind) => conceptJson([kind.reaction]));
const SEVERITIES = ['mild', 'moderate', 'severe'] as const;
/** Coprime with the number of kinds, so a patient's allergies are distinct. */
const KIND_STEP = 3;

export function allergyIntoleranceModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const kindOf = (patient: number, j: number): number =>
    (cohort.hash(SALT.allergyKind, patient) + j * KIND_STEP) % ALLERGY_KINDS.length;
  const statusOf = (patient: number, j: number): number =>
    chooseStatus(cohort.unit(SALT.allergyStatus, patient, j));
  const recorded = (patient: number, j: number): number =>
    cohort.encounterStart(patient, cohort.encounterOf(patient, j)) +
    (5 + (cohort.hash(SALT.allergyTiming, patient, j) % 26)) * MINUTE_MS;
  const lastUpdated = (patient: number, j: number): number =>
    recorded(patient, j) + (cohort.hash(SALT.allergyTiming, patient, j + 64) % 300) * 1000;

  const render = (patient: number, j: number): string => {
    stream.reset(cohort.hash(SALT.allergyRender, patient, j));
    const kindIndex = kindOf(patient, j);
    const kind = ALLERGY_KINDS[kindIndex]!;
    const severity = stream.below(SEVERITIES.length);
    return `{"resourceType":"AllergyIntolerance","id":"${clinicalId('AllergyIntolerance', patient, j)}","meta":{"versionId":"1","lastUpdated":"${formatInstant(lastUpdated(patient, j))}"${PROFILE}},"clinicalStatus":${CLINICAL_STATUS[statusOf(patient, j)]},"verificationStatus":${CONFIRMED},"type":"${kind.type}","category":["${kind.category}"],"criticality":"${severity === 2 ? 'high' : 'low'}","code":${CODES[kindIndex]},"patient":{"reference":"Patient/${patientId(patient)}"},"encounter":{"reference":"Encounter/${clinicalId('Encounter', patient, cohort.encounterOf(patient, j))}"},"recordedDate":"${formatInstant(recorded(patient, j))}","recorder":{"reference":"Practitioner/${practitionerId(cohort.generalPractitioner(patient))}"},"reaction":[{"manifestation":[${REACTIONS[kindIndex]}],"severity":"${SEVERITIES[severity]}"}]}`;
  };

  return {
    type: 'AllergyIntolerance',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('AllergyIntolerance'),
    lastUpdated,
    render,
    id: (patient, j) => clinicalId('AllergyIntolerance', patient, j),
    search: {
      'clinical-status': codeParameter(SYSTEM.allergyClinical, STATUS_CODES, statusOf),
      category: {
        domain: ALLERGY_KINDS.map((kind) => [{ system: SYSTEM.allergyCategory, code: kind.category }]),
        valueIndex: kindOf,
      },
      code: { domain: ALLERGY_KINDS.map((kind) => [kind.code]), valueIndex: kindOf },
    },
  };
}
