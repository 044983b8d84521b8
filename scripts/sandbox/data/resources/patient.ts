import { formatDate, formatInstant, YEAR_MS } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import {
  codedJson,
  conceptJson,
  organizationId,
  patientId,
  practitionerId,
  profileJson,
  type TypeModel,
  technicalPatientId,
} from '../model.js';
import { Stream, weightedChoice } from '../random.js';
import { codeParameter } from '../search.js';
import {
  ADMINISTRATIVE_GENDERS,
  CITIES,
  type Code,
  ETHNICITIES,
  FAMILY_NAMES,
  FEMALE_GIVEN_NAMES,
  LANGUAGES,
  MALE_GIVEN_NAMES,
  MARITAL_STATUSES,
  RACES,
  STREET_NAMES,
  STREET_SUFFIXES,
  SYSTEM,
} from '../vocabulary.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient');
const chooseGender = weightedChoice([49, 49, 1, 1]);
const BIRTH_SEX = ['M', 'F', 'UNK', 'UNK'] as const;
const chooseRace = weightedChoice(RACES.map((race) => race.weight));
const chooseEthnicity = weightedChoice(ETHNICITIES.map((ethnicity) => ethnicity.weight));
const chooseLanguage = weightedChoice(LANGUAGES.map((language) => language.weight));

function ombExtension(url: string, code: Code & { readonly detailed?: true }): string {
  return JSON.stringify({
    url,
    extension: [
      {
        url: code.detailed ? 'detailed' : 'ombCategory',
        valueCoding: { system: code.system, code: code.code, display: code.display },
      },
      { url: 'text', valueString: code.display },
    ],
  });
}

const RACE_EXTENSIONS = RACES.map((race) =>
  ombExtension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race', race),
);
const ETHNICITY_EXTENSIONS = ETHNICITIES.map((ethnicity) =>
  ombExtension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity', ethnicity),
);
const MARITAL = MARITAL_STATUSES.map((status) => codedJson([status]));
const NEVER_MARRIED = MARITAL[1]!;
const LANGUAGE = LANGUAGES.map((language) => codedJson([language]));
const MRN_TYPE = conceptJson(
  [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'MR', display: 'Medical record number' }],
  'Medical Record Number',
);
const SSN_TYPE = conceptJson(
  [
    {
      system: 'http://terminology.hl7.org/CodeSystem/v2-0203',
      code: 'SS',
      display: 'Social Security number',
    },
  ],
  'Social Security Number',
);

/** A first and a middle name, never the same. */
function givenPair(stream: Stream, names: readonly string[]): string {
  const first = stream.below(names.length);
  const middle = (first + 1 + stream.below(names.length - 1)) % names.length;
  return `"${names[first]}","${names[middle]}"`;
}

/** Four random digits, zero-padded. */
function digits4(stream: Stream): string {
  return `${stream.below(10_000)}`.padStart(4, '0');
}

export function patientModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const genderOf = (patient: number): number => chooseGender(cohort.unit(SALT.gender, patient));
  const lastUpdated = (patient: number): number => cohort.instantInHistory(SALT.patientUpdated, patient);

  const render = (patient: number): string => {
    stream.reset(cohort.hash(SALT.patientRender, patient));
    const gender = genderOf(patient);
    const givenNames =
      gender === 0 || (gender > 1 && stream.next() < 0.5) ? MALE_GIVEN_NAMES : FEMALE_GIVEN_NAMES;
    const city = stream.pick(CITIES);
    const birthMs = cohort.birthMs(patient);
    // Moved in at some point of their adult life (or at birth), before the history began.
    const movedInMs = Math.max(
      birthMs,
      cohort.historyStartMs - stream.below(20) * YEAR_MS - stream.below(365) * 86_400_000,
    );
    const gp = cohort.generalPractitioner(patient);
    return `{"resourceType":"Patient","id":"${patientId(patient)}","meta":{"versionId":"${1 + stream.below(3)}","lastUpdated":"${formatInstant(lastUpdated(patient))}"${PROFILE}},"extension":[${RACE_EXTENSIONS[chooseRace(stream.next())]},${ETHNICITY_EXTENSIONS[chooseEthnicity(stream.next())]},{"url":"http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex","valueCode":"${BIRTH_SEX[gender]}"}],"identifier":[{"use":"usual","type":${MRN_TYPE},"system":"${SYSTEM.mrn}","value":"${technicalPatientId(patient)}"},{"use":"official","type":${SSN_TYPE},"system":"${SYSTEM.ssn}","value":"999-${10 + stream.below(90)}-${digits4(stream)}"}],"active":true,"name":[{"use":"official","family":"${stream.pick(FAMILY_NAMES)}","given":[${givenPair(stream, givenNames)}]}],"telecom":[{"system":"phone","value":"${city.areaCode}-555-01${10 + stream.below(90)}","use":"home"}],"gender":"${ADMINISTRATIVE_GENDERS[gender]}","birthDate":"${formatDate(birthMs)}","address":[{"use":"home","type":"physical","line":["${stream.between(1, 9999)} ${stream.pick(STREET_NAMES)} ${stream.pick(STREET_SUFFIXES)}"],"city":"${city.city}","state":"${city.state}","postalCode":"${city.zip3}${10 + stream.below(90)}","country":"US","period":{"start":"${formatDate(movedInMs)}"}}],"maritalStatus":${cohort.epochMs - birthMs < 18 * YEAR_MS ? NEVER_MARRIED : MARITAL[stream.below(MARITAL.length)]},"communication":[{"language":${LANGUAGE[chooseLanguage(stream.next())]},"preferred":true}],"generalPractitioner":[{"reference":"Practitioner/${practitionerId(gp)}"}],"managingOrganization":{"reference":"Organization/${organizationId(cohort.organizationOf(gp))}"}}`;
  };

  return {
    type: 'Patient',
    scope: 'patient',
    ownerCount: cohort.patientCount,
    countOf: () => 1,
    lastUpdated,
    render,
    id: patientId,
    search: {
      gender: codeParameter(SYSTEM.administrativeGender, ADMINISTRATIVE_GENDERS, genderOf),
    },
  };
}
