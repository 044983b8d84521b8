import type { Bearer, FhirHttp } from '../adapters/fhir-http.js';
import { type GroupMembers, groupMemberReferences } from '../core/chunks.js';
import type { HttpResponseView } from '../core/kickoff.js';
import { AccessTokenRejectedError, ConfigurationError, TransientServerError } from '../errors.js';

const FHIR_JSON = { accept: 'application/fhir+json' };

/** Every cohort read is a URL of the FHIR base: the token need go nowhere else. */
const bearerFor = (fhirBaseUrl: string, accessToken: string | undefined): Bearer | undefined =>
  accessToken === undefined ? undefined : { accessToken, audience: { fhirBaseUrl, trustedOrigins: [] } };

function refusal(response: HttpResponseView, what: string): Error | undefined {
  if (response.status === 401 || response.status === 403) {
    return new AccessTokenRejectedError(
      `${what} was refused (${response.status}): the client may lack a read scope for it`,
    );
  }
  if (response.status === 429 || response.status >= 500) {
    return new TransientServerError(`${what} answered ${response.status}`);
  }
  return undefined;
}

function json(response: HttpResponseView, what: string): unknown {
  try {
    return JSON.parse(response.body ?? '');
  } catch {
    throw new ConfigurationError(`${what} answered ${response.status} without a JSON body`);
  }
}

/**
 * The cohort of a Group export, read from the server (`GET Group/{id}`) for a
 * patients-chunked plan. The first member is looked up too: EHRs whose Group
 * lists patients by a technical id (not the logical id the `patient`
 * parameter needs) would otherwise export chunks of nobody. A member that is
 * not found by id is searched by identifier, and the error says what was
 * searched and what was found.
 */
export async function readCohort(
  fhir: FhirHttp,
  fhirBaseUrl: string,
  groupId: string,
  accessToken: string | undefined,
): Promise<GroupMembers> {
  const what = `GET Group/${groupId}`;
  const response = await fhir.send(
    { method: 'GET', url: `${fhirBaseUrl}/Group/${encodeURIComponent(groupId)}`, headers: FHIR_JSON },
    bearerFor(fhirBaseUrl, accessToken),
  );
  const refused = refusal(response, what);
  if (refused) throw refused;
  if (response.status === 404 || response.status === 410) {
    throw new ConfigurationError(
      `${what} answered ${response.status}: export.groupId names no Group on this server`,
    );
  }
  if (response.status !== 200) throw new ConfigurationError(`${what} answered ${response.status}`);
  const members = groupMemberReferences(json(response, what), groupId);
  await checkMemberIsALogicalId(fhir, fhirBaseUrl, groupId, members.patients[0]!, accessToken);
  return members;
}

async function checkMemberIsALogicalId(
  fhir: FhirHttp,
  fhirBaseUrl: string,
  groupId: string,
  member: string,
  accessToken: string | undefined,
): Promise<void> {
  const id = member.slice('Patient/'.length);
  const read = await fhir.send(
    { method: 'GET', url: `${fhirBaseUrl}/${member}`, headers: FHIR_JSON },
    bearerFor(fhirBaseUrl, accessToken),
  );
  const refused = refusal(read, `GET ${member}`);
  if (refused) throw refused;
  if (read.status === 200) return;
  if (read.status !== 404 && read.status !== 410)
    throw new ConfigurationError(`GET ${member} answered ${read.status}`);
  const search = `Patient?identifier=${encodeURIComponent(id)}`;
  const found = await fhir.send(
    { method: 'GET', url: `${fhirBaseUrl}/${search}`, headers: FHIR_JSON },
    bearerFor(fhirBaseUrl, accessToken),
  );
  const searchRefused = refusal(found, `GET ${search}`);
  if (searchRefused) throw searchRefused;
  const bundle =
    found.status === 200
      ? (json(found, `GET ${search}`) as { entry?: { resource?: { id?: unknown } }[] })
      : {};
  const logicalIds = (bundle.entry ?? [])
    .map((entry) => entry.resource?.id)
    .filter((value): value is string => typeof value === 'string');
  throw new ConfigurationError(
    logicalIds.length > 0
      ? `Group/${groupId} lists ${member}, but GET ${member} answered ${read.status} and ${search} found Patient/${logicalIds.slice(0, 3).join(', Patient/')}: the Group references its patients by a technical id, not the logical id the patient parameter needs; list the cohort by logical id instead, or ask the EHR for a Group that references its members by logical id`
      : `Group/${groupId} lists ${member}, but GET ${member} answered ${read.status} and ${search} found nothing: the Group's members are not patients this client can read`,
  );
}
