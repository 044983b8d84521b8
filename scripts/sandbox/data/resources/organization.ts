import { formatInstant } from '../clock.js';
import { type Cohort, SALT } from '../cohort.js';
import { codedJson, organizationId, profileJson, type TypeModel } from '../model.js';
import { CITIES, ORGANIZATION_SUFFIXES, STREET_NAMES, STREET_SUFFIXES, SYSTEM } from '../vocabulary.js';
import { npi } from './npi.js';

const PROFILE = profileJson('http://hl7.org/fhir/us/core/StructureDefinition/us-core-organization');
const PROVIDER = codedJson([
  {
    system: 'http://terminology.hl7.org/CodeSystem/organization-type',
    code: 'prov',
    display: 'Healthcare Provider',
  },
]);
const NPI_BASE = 198_760_000;
const NAMES_PER_ROUND = CITIES.length * ORGANIZATION_SUFFIXES.length;

/** Name and address depend on the index alone: unique names, and practitioners share the address. */
export function organizationName(organization: number): string {
  const city = CITIES[organization % CITIES.length]!.city;
  const suffix =
    ORGANIZATION_SUFFIXES[Math.floor(organization / CITIES.length) % ORGANIZATION_SUFFIXES.length]!;
  const round = Math.floor(organization / NAMES_PER_ROUND);
  return round === 0 ? `${city} ${suffix}` : `${city} ${suffix} ${round + 1}`;
}

export function organizationAddress(organization: number): string {
  const city = CITIES[organization % CITIES.length]!;
  const street = STREET_NAMES[organization % STREET_NAMES.length]!;
  const suffix = STREET_SUFFIXES[organization % STREET_SUFFIXES.length]!;
  return `{"use":"work","line":["${100 + ((organization * 37) % 900)} ${street} ${suffix}"],"city":"${city.city}","state":"${city.state}","postalCode":"${city.zip3}${10 + (organization % 90)}","country":"US"}`;
}

export function organizationModel(cohort: Cohort): TypeModel {
  const lastUpdated = (organization: number): number =>
    cohort.instantInHistory(SALT.organizationUpdated, organization);

  const render = (organization: number): string => {
    const city = CITIES[organization % CITIES.length]!;
    return `{"resourceType":"Organization","id":"${organizationId(organization)}","meta":{"versionId":"1","lastUpdated":"${formatInstant(lastUpdated(organization))}"${PROFILE}},"identifier":[{"system":"${SYSTEM.npi}","value":"${npi(NPI_BASE + organization)}"}],"active":true,"type":[${PROVIDER}],"name":"${organizationName(organization)}","telecom":[{"system":"phone","value":"${city.areaCode}-555-01${10 + (organization % 90)}","use":"work"}],"address":[${organizationAddress(organization)}]}`;
  };

  return {
    type: 'Organization',
    scope: 'organization',
    ownerCount: cohort.organizationCount,
    countOf: () => 1,
    lastUpdated,
    render,
    id: organizationId,
    search: {},
  };
}
