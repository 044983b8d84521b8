import { formatInstant, HOUR_MS } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import {
  clinicalId,
  codedJson,
  codingJson,
  conceptJson,
  organizationId,
  patientId,
  practitionerId,
  profileJson,
  type TypeModel,
} from '../model.js';
import { Stream, weightedChoice } from '../random.js';
import { codeParameter } from '../search.js';
import { ENCOUNTER_KINDS, ENCOUNTER_REASONS, ENCOUNTER_STATUSES, SYSTEM } from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-encounter');
const STATUS_CODES = ENCOUNTER_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(ENCOUNTER_STATUSES.map((status) => status.weight));
const CLASSES = ENCOUNTER_KINDS.map((kind) => codingJson(kind.class));
const TYPES = ENCOUNTER_KINDS.map((kind) => conceptJson([kind.type]));
const REASONS = ENCOUNTER_REASONS.map((reason) => conceptJson([reason]));
const PRIMARY_PERFORMER = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType',
    code: 'PPRF',
    display: 'primary performer',
  },
]);
const HOSPITALIZATION = JSON.stringify({
  admitSource: {
    coding: [
      {
        system: 'http://terminology.hl7.org/CodeSystem/admit-source',
        code: 'emd',
        display: 'From accident/emergency department',
      },
    ],
  },
  dischargeDisposition: {
    coding: [
      {
        system: 'http://terminology.hl7.org/CodeSystem/discharge-disposition',
        code: 'home',
        display: 'Home',
      },
    ],
  },
});
/** Kinds whose encounters state why the patient came. */
const WITH_REASON = new Set(['185345009', '50849002', '32485007']);
const INPATIENT = 'IMP';

export function encounterModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const statusOf = (patient: number, encounter: number): number =>
    chooseStatus(cohort.unit(SALT.encounterStatus, patient, encounter));
  const kindOf = (patient: number, encounter: number): number => cohort.encounterKind(patient, encounter);

  /** In-progress and cancelled encounters have no end; the others are updated after they end. */
  const lastUpdated = (patient: number, encounter: number): number => {
    const status = STATUS_CODES[statusOf(patient, encounter)];
    const base =
      status === 'in-progress' || status === 'cancelled'
        ? cohort.encounterStart(patient, encounter)
        : cohort.encounterEnd(patient, encounter);
    return base + HOUR_MS + (cohort.hash(SALT.encounterUpdated, patient, encounter) % (23 * HOUR_MS));
  };

  const render = (patient: number, encounter: number): string => {
    stream.reset(cohort.hash(SALT.encounterRender, patient, encounter));
    const status = STATUS_CODES[statusOf(patient, encounter)]!;
    const kindIndex = kindOf(patient, encounter);
    const kind = ENCOUNTER_KINDS[kindIndex]!;
    const start = formatInstant(cohort.encounterStart(patient, encounter));
    const period =
      status === 'in-progress' || status === 'cancelled'
        ? `{"start":"${start}"}`
        : `{"start":"${start}","end":"${formatInstant(cohort.encounterEnd(patient, encounter))}"}`;
    const practitioner = cohort.encounterPractitioner(patient, encounter);
    const reason = WITH_REASON.has(kind.type.code) ? `,"reasonCode":[${stream.pick(REASONS)}]` : '';
    const hospitalization = kind.class.code === INPATIENT ? `,"hospitalization":${HOSPITALIZATION}` : '';
    return `{"resourceType":"Encounter","id":"${clinicalId('Encounter', patient, encounter)}","meta":{"versionId":"${1 + stream.below(2)}","lastUpdated":"${formatInstant(lastUpdated(patient, encounter))}"${PROFILE}},"identifier":[{"use":"usual","system":"${SYSTEM.visit}","value":"V${patient * 10 + encounter}"}],"status":"${status}","class":${CLASSES[kindIndex]},"type":[${TYPES[kindIndex]}],"subject":{"reference":"Patient/${patientId(patient)}"},"participant":[{"type":[${PRIMARY_PERFORMER}],"period":${period},"individual":{"reference":"Practitioner/${practitionerId(practitioner)}"}}],"period":${period}${reason}${hospitalization},"serviceProvider":{"reference":"Organization/${organizationId(cohort.organizationOf(practitioner))}"}}`;
  };

  return {
    type: 'Encounter',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('Encounter'),
    lastUpdated,
    render,
    id: (patient, encounter) => clinicalId('Encounter', patient, encounter),
    search: {
      status: codeParameter(SYSTEM.encounterStatus, STATUS_CODES, statusOf),
      class: { domain: ENCOUNTER_KINDS.map((kind) => [kind.class]), valueIndex: kindOf },
      type: { domain: ENCOUNTER_KINDS.map((kind) => [kind.type]), valueIndex: kindOf },
    },
  };
}
