import { formatDate, formatInstant, MINUTE_MS, YEAR_MS } from '../clock.js';
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
import { IMMUNIZATION_STATUSES, SYSTEM, VACCINES } from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-immunization');
const STATUS_CODES = IMMUNIZATION_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(IMMUNIZATION_STATUSES.map((status) => status.weight));
const CODES = VACCINES.map((vaccine) => conceptJson([vaccine.code]));
const PATIENT_OBJECTION = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason',
    code: 'PATOBJ',
    display: 'patient objection',
  },
]);
const SITES = [
  codedJson([
    { system: 'http://terminology.hl7.org/CodeSystem/v3-ActSite', code: 'LA', display: 'left arm' },
  ]),
  codedJson([
    { system: 'http://terminology.hl7.org/CodeSystem/v3-ActSite', code: 'RA', display: 'right arm' },
  ]),
];
const INTRAMUSCULAR = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration',
    code: 'IM',
    display: 'Injection, intramuscular',
  },
]);
const ADMINISTERING = codedJson([
  { system: 'http://terminology.hl7.org/CodeSystem/v2-0443', code: 'AP', display: 'Administering Provider' },
]);
const LOT_LETTERS = 'ABCDEFGHJKLMNPRSTUVWXYZ';
/** Coprime with the number of vaccines, so a patient's vaccines are distinct. */
const KIND_STEP = 3;

export function immunizationModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const kindOf = (patient: number, j: number): number =>
    (cohort.hash(SALT.immunizationKind, patient) + j * KIND_STEP) % VACCINES.length;
  const statusOf = (patient: number, j: number): number =>
    chooseStatus(cohort.unit(SALT.immunizationStatus, patient, j));
  const occurrence = (patient: number, j: number): number =>
    cohort.encounterStart(patient, cohort.encounterOf(patient, j)) +
    (10 + (cohort.hash(SALT.immunizationTiming, patient, j) % 41)) * MINUTE_MS;
  const lastUpdated = (patient: number, j: number): number =>
    occurrence(patient, j) + (1 + (cohort.hash(SALT.immunizationTiming, patient, j + 64) % 30)) * MINUTE_MS;

  const render = (patient: number, j: number): string => {
    stream.reset(cohort.hash(SALT.immunizationRender, patient, j));
    const kindIndex = kindOf(patient, j);
    const vaccine = VACCINES[kindIndex]!;
    const status = STATUS_CODES[statusOf(patient, j)]!;
    const occurred = occurrence(patient, j);
    const given =
      status === 'not-done'
        ? `,"statusReason":${PATIENT_OBJECTION}`
        : `,"lotNumber":"${LOT_LETTERS[stream.below(LOT_LETTERS.length)]}${LOT_LETTERS[stream.below(LOT_LETTERS.length)]}${1000 + stream.below(9000)}","expirationDate":"${formatDate(occurred + YEAR_MS)}","site":${SITES[stream.below(2)]},"route":${INTRAMUSCULAR},"doseQuantity":{"value":${vaccine.doseMl},"unit":"mL","system":"${SYSTEM.ucum}","code":"mL"}`;
    return `{"resourceType":"Immunization","id":"${clinicalId('Immunization', patient, j)}","meta":{"versionId":"1","lastUpdated":"${formatInstant(lastUpdated(patient, j))}"${PROFILE}},"status":"${status}","vaccineCode":${CODES[kindIndex]},"patient":{"reference":"Patient/${patientId(patient)}"},"encounter":{"reference":"Encounter/${clinicalId('Encounter', patient, cohort.encounterOf(patient, j))}"},"occurrenceDateTime":"${formatInstant(occurred)}","recorded":"${formatInstant(occurred)}","primarySource":true,"manufacturer":{"display":"${vaccine.manufacturer}"}${given},"performer":[{"function":${ADMINISTERING},"actor":{"reference":"Practitioner/${practitionerId(cohort.generalPractitioner(patient))}"}}]}`;
  };

  return {
    type: 'Immunization',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('Immunization'),
    lastUpdated,
    render,
    id: (patient, j) => clinicalId('Immunization', patient, j),
    search: {
      status: codeParameter(SYSTEM.eventStatus, STATUS_CODES, statusOf),
      'vaccine-code': { domain: VACCINES.map((vaccine) => [vaccine.code]), valueIndex: kindOf },
    },
  };
}
