import { formatInstant } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import { conceptJson, practitionerId, profileJson, type TypeModel } from '../model.js';
import { Stream } from '../random.js';
import {
  CITIES,
  FAMILY_NAMES,
  FEMALE_GIVEN_NAMES,
  MALE_GIVEN_NAMES,
  QUALIFICATIONS,
  SYSTEM,
} from '../vocabulary.js';
import { npi } from './npi.js';
import { organizationAddress } from './organization.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-practitioner');
const QUALIFICATION = QUALIFICATIONS.map((qualification) => conceptJson([qualification], qualification.code));
const NURSE_PRACTITIONER = QUALIFICATIONS.findIndex((qualification) => qualification.code === 'NP');
/** Practitioner NPIs start at 1234500000 (organizations at 1987600000): distinct, stable. */
const NPI_BASE = 123_450_000;

export function practitionerModel(cohort: Cohort): TypeModel {
  const stream = new Stream();
  const lastUpdated = (practitioner: number): number =>
    cohort.instantInHistory(SALT.practitionerUpdated, practitioner);

  const render = (practitioner: number): string => {
    stream.reset(cohort.hash(SALT.practitionerRender, practitioner));
    const female = stream.next() < 0.5;
    const given = stream.pick(female ? FEMALE_GIVEN_NAMES : MALE_GIVEN_NAMES);
    const family = stream.pick(FAMILY_NAMES);
    const qualification = stream.below(QUALIFICATIONS.length);
    const organization = cohort.organizationOf(practitioner);
    const city = CITIES[organization % CITIES.length]!;
    const prefix = qualification === NURSE_PRACTITIONER ? '' : ',"prefix":["Dr."]';
    return `{"resourceType":"Practitioner","id":"${practitionerId(practitioner)}","meta":{"versionId":"${1 + stream.below(4)}","lastUpdated":"${formatInstant(lastUpdated(practitioner))}"${PROFILE}},"identifier":[{"system":"${SYSTEM.npi}","value":"${npi(NPI_BASE + practitioner)}"}],"active":true,"name":[{"use":"official","family":"${family}","given":["${given}"]${prefix}}],"telecom":[{"system":"phone","value":"${city.areaCode}-555-01${10 + stream.below(90)}","use":"work"},{"system":"email","value":"${given.toLowerCase()}.${family.toLowerCase()}.${practitioner}@example.org","use":"work"}],"address":[${organizationAddress(organization)}],"gender":"${female ? 'female' : 'male'}","qualification":[{"code":${QUALIFICATION[qualification]}}]}`;
  };

  return {
    type: 'Practitioner',
    scope: 'practitioner',
    ownerCount: cohort.practitionerCount,
    countOf: () => 1,
    lastUpdated,
    render,
    id: practitionerId,
    search: {},
  };
}
