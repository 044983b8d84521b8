import { scopesAllowExport } from '../auth/scopes.js';
import type { Routed, SandboxState } from '../context.js';
import { parsePatientId } from '../data/dataset.js';
import { patientId, technicalPatientId } from '../data/model.js';
import { FHIR_JSON, sendJson, sendOutcome } from '../http.js';

/** The patient index a technical id (its MRN identifier's value) names, if any. */
function patientOfTechnicalId(value: string): number | undefined {
  const match = /^M(\d{8,9})$/.exec(value);
  const index = match ? Number(match[1]) - 10_000_000 : -1;
  return index >= 0 && technicalPatientId(index) === value ? index : undefined;
}

/**
 * `GET [base]/Patient/[id]` and `GET [base]/Patient?identifier=[system|]value`:
 * what a client needs to tell a Group's technical ids from logical ids
 * (a read that finds nothing, a search by identifier that does).
 */
export function patientRead(state: SandboxState, routed: Routed, id?: string): void {
  const grant = state.authenticate(routed);
  if (!grant) return;
  if (!scopesAllowExport(grant.scopes, 'Patient')) {
    sendOutcome(routed.res, 403, 'forbidden', 'the access token does not allow reading Patient');
    return;
  }
  const patients = state.dataset.count({ type: 'Patient' });
  const resourceOf = (index: number) =>
    JSON.parse([...state.dataset.lines({ type: 'Patient', patientIndexes: [index] }, 0, 1)][0]!) as unknown;
  if (id !== undefined) {
    const index = parsePatientId(id);
    if (index === undefined || index >= patients) {
      sendOutcome(routed.res, 404, 'not-found', `Patient/${id} does not exist`);
      return;
    }
    sendJson(routed.res, 200, resourceOf(index), {}, FHIR_JSON);
    return;
  }
  const identifier = new URLSearchParams(routed.query).get('identifier');
  if (identifier === null) {
    sendOutcome(routed.res, 400, 'not-supported', 'this server searches Patient by identifier only');
    return;
  }
  const value = identifier.includes('|') ? identifier.slice(identifier.indexOf('|') + 1) : identifier;
  const index = patientOfTechnicalId(value);
  const matches = index !== undefined && index < patients ? [index] : [];
  sendJson(
    routed.res,
    200,
    {
      resourceType: 'Bundle',
      type: 'searchset',
      total: matches.length,
      entry: matches.map((match) => ({
        fullUrl: `${state.mainOrigin}${routed.prefix}/fhir/Patient/${patientId(match)}`,
        resource: resourceOf(match),
        search: { mode: 'match' },
      })),
    },
    {},
    FHIR_JSON,
  );
}
