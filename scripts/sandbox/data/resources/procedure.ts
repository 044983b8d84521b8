import { formatInstant, MINUTE_MS } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import {
  clinicalId,
  conceptJson,
  organizationId,
  patientId,
  practitionerId,
  profileJson,
  type TypeModel,
} from '../model.js';
import { weightedChoice } from '../random.js';
import { codeParameter } from '../search.js';
import { PROCEDURE_KINDS, PROCEDURE_STATUSES, SYSTEM } from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-procedure');
const STATUS_CODES = PROCEDURE_STATUSES.map((status) => status.code);
const chooseStatus = weightedChoice(PROCEDURE_STATUSES.map((status) => status.weight));
const chooseKind = weightedChoice(PROCEDURE_KINDS.map((kind) => kind.weight));
const CODES = PROCEDURE_KINDS.map((kind) => conceptJson([kind.code]));
const REFUSED = conceptJson([
  { system: SYSTEM.snomed, code: '183944003', display: 'Procedure refused (situation)' },
]);

export function procedureModel(cohort: Cohort): TypeModel {
  const kindOf = (patient: number, j: number): number =>
    chooseKind(cohort.unit(SALT.procedureKind, patient, j));
  const statusOf = (patient: number, j: number): number =>
    chooseStatus(cohort.unit(SALT.procedureStatus, patient, j));
  /** [start, end, lastUpdated] of the procedure, within its encounter's day. */
  const timing = (patient: number, j: number): [number, number, number] => {
    const h = cohort.hash(SALT.procedureTiming, patient, j);
    const start =
      cohort.encounterStart(patient, cohort.encounterOf(patient, j)) + (10 + (h % 31)) * MINUTE_MS;
    const end = start + PROCEDURE_KINDS[kindOf(patient, j)]!.minutes * MINUTE_MS;
    return [start, end, end + (5 + ((h >>> 8) % 56)) * MINUTE_MS];
  };

  const render = (patient: number, j: number): string => {
    const kindIndex = kindOf(patient, j);
    const status = STATUS_CODES[statusOf(patient, j)]!;
    const encounter = cohort.encounterOf(patient, j);
    const [start, end, lastUpdated] = timing(patient, j);
    const practitioner = cohort.encounterPractitioner(patient, encounter);
    const performed =
      status === 'not-done'
        ? `"statusReason":${REFUSED}`
        : `"performedPeriod":{"start":"${formatInstant(start)}"${status === 'in-progress' ? '' : `,"end":"${formatInstant(end)}"`}}`;
    return `{"resourceType":"Procedure","id":"${clinicalId('Procedure', patient, j)}","meta":{"versionId":"1","lastUpdated":"${formatInstant(lastUpdated)}"${PROFILE}},"status":"${status}","code":${CODES[kindIndex]},"subject":{"reference":"Patient/${patientId(patient)}"},"encounter":{"reference":"Encounter/${clinicalId('Encounter', patient, encounter)}"},${performed},"performer":[{"actor":{"reference":"Practitioner/${practitionerId(practitioner)}"},"onBehalfOf":{"reference":"Organization/${organizationId(cohort.organizationOf(practitioner))}"}}]}`;
  };

  return {
    type: 'Procedure',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('Procedure'),
    lastUpdated: (patient, j) => timing(patient, j)[2],
    render,
    id: (patient, j) => clinicalId('Procedure', patient, j),
    search: {
      status: codeParameter(SYSTEM.eventStatus, STATUS_CODES, statusOf),
      code: { domain: PROCEDURE_KINDS.map((kind) => [kind.code]), valueIndex: kindOf },
    },
  };
}
