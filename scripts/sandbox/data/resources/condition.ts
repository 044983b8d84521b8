import { DAY_MS, formatInstant, MINUTE_MS } from '../clock.js';
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
  ACUTE_CLINICAL_STATUSES,
  CHRONIC_CLINICAL_STATUSES,
  CLINICAL_STATUS_CODES,
  CONDITION_CATEGORIES,
  CONDITION_KINDS,
  type StatusCode,
  SYSTEM,
} from '../vocabulary.js';

const PROBLEM_PROFILE = profileJson(
  'http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns',
);
const DIAGNOSIS_PROFILE = profileJson(
  'http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-encounter-diagnosis',
);
const CLINICAL_STATUS = CLINICAL_STATUS_CODES.map((code) =>
  codedJson([{ system: SYSTEM.conditionClinical, code, display: code[0]!.toUpperCase() + code.slice(1) }]),
);
const CONFIRMED = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status',
    code: 'confirmed',
    display: 'Confirmed',
  },
]);
const PROBLEM_LIST = codedJson([CONDITION_CATEGORIES.problemList]);
const ENCOUNTER_DIAGNOSIS = codedJson([CONDITION_CATEGORIES.encounterDiagnosis]);
const CODES = CONDITION_KINDS.map((kind) => conceptJson([kind.snomed, kind.icd10], kind.icd10.display));
const RESOLVED = CLINICAL_STATUS_CODES.indexOf('resolved');
const PROBLEM_LIST_CATEGORY = 0;
const ENCOUNTER_DIAGNOSIS_CATEGORY = 1;

/** A chooser returning indexes into CLINICAL_STATUS_CODES. */
function clinicalStatusChooser(statuses: readonly StatusCode[]): (fraction: number) => number {
  const choose = weightedChoice(statuses.map((status) => status.weight));
  const indexes = statuses.map((status) => CLINICAL_STATUS_CODES.indexOf(status.code as never));
  return (fraction) => indexes[choose(fraction)]!;
}
const chooseChronicStatus = clinicalStatusChooser(CHRONIC_CLINICAL_STATUSES);
const chooseAcuteStatus = clinicalStatusChooser(ACUTE_CLINICAL_STATUSES);

export function conditionModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const kindOf = (patient: number, j: number): number => cohort.conditionKind(patient, j);
  const categoryOf = (patient: number, j: number): number =>
    CONDITION_KINDS[kindOf(patient, j)]!.chronic ? PROBLEM_LIST_CATEGORY : ENCOUNTER_DIAGNOSIS_CATEGORY;
  const clinicalStatusOf = (patient: number, j: number): number => {
    const fraction = cohort.unit(SALT.conditionStatus, patient, j);
    return CONDITION_KINDS[kindOf(patient, j)]!.chronic
      ? chooseChronicStatus(fraction)
      : chooseAcuteStatus(fraction);
  };

  /** [recorded, abatement or NaN, lastUpdated]: a resolved condition is updated when it resolves. */
  const timing = (patient: number, j: number): [number, number, number] => {
    const h = cohort.hash(SALT.conditionTiming, patient, j);
    const recorded =
      cohort.encounterStart(patient, cohort.encounterOf(patient, j)) + (10 + (h % 41)) * MINUTE_MS;
    if (clinicalStatusOf(patient, j) !== RESOLVED)
      return [recorded, Number.NaN, recorded + ((h >>> 8) % 600) * 1000];
    // Resolves within weeks, always before the epoch (the encounter is at least days before it).
    const healing = Math.min((5 + ((h >>> 8) % 21)) * DAY_MS, Math.floor((cohort.epochMs - recorded) / 2));
    const abatement = recorded + healing;
    return [recorded, abatement, abatement + ((h >>> 16) % 3600) * 1000];
  };

  const render = (patient: number, j: number): string => {
    stream.reset(cohort.hash(SALT.conditionRender, patient, j));
    const kindIndex = kindOf(patient, j);
    const chronic = CONDITION_KINDS[kindIndex]!.chronic;
    const encounter = cohort.encounterOf(patient, j);
    const [recorded, abatement, lastUpdated] = timing(patient, j);
    const onset = chronic
      ? recorded - stream.between(30, 3650) * DAY_MS
      : recorded - stream.between(1, 7) * DAY_MS;
    const abated = Number.isNaN(abatement) ? '' : `,"abatementDateTime":"${formatInstant(abatement)}"`;
    const practitioner = practitionerId(cohort.encounterPractitioner(patient, encounter));
    return `{"resourceType":"Condition","id":"${clinicalId('Condition', patient, j)}","meta":{"versionId":"${1 + stream.below(3)}","lastUpdated":"${formatInstant(lastUpdated)}"${chronic ? PROBLEM_PROFILE : DIAGNOSIS_PROFILE}},"clinicalStatus":${CLINICAL_STATUS[clinicalStatusOf(patient, j)]},"verificationStatus":${CONFIRMED},"category":[${chronic ? PROBLEM_LIST : ENCOUNTER_DIAGNOSIS}],"code":${CODES[kindIndex]},"subject":{"reference":"Patient/${patientId(patient)}"},"encounter":{"reference":"Encounter/${clinicalId('Encounter', patient, encounter)}"},"onsetDateTime":"${formatInstant(onset)}"${abated},"recordedDate":"${formatInstant(recorded)}","recorder":{"reference":"Practitioner/${practitioner}"},"asserter":{"reference":"Practitioner/${practitioner}"}}`;
  };

  return {
    type: 'Condition',
    scope: 'clinical',
    ownerCount: cohort.patientCount,
    countOf: cohort.counter('Condition'),
    lastUpdated: (patient, j) => timing(patient, j)[2],
    render,
    id: (patient, j) => clinicalId('Condition', patient, j),
    search: {
      'clinical-status': codeParameter(SYSTEM.conditionClinical, CLINICAL_STATUS_CODES, clinicalStatusOf),
      category: {
        domain: [[CONDITION_CATEGORIES.problemList], [CONDITION_CATEGORIES.encounterDiagnosis]],
        valueIndex: categoryOf,
      },
      code: { domain: CONDITION_KINDS.map((kind) => [kind.snomed, kind.icd10]), valueIndex: kindOf },
    },
  };
}
