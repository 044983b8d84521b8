/** `.well-known/smart-configuration`, the CapabilityStatement, and Group read/search. */
import { scopesAllowExport } from '../auth/scopes.js';
import type { Routed, SandboxState } from '../context.js';
import { EXPORTABLE_TYPES } from '../data/types.js';
import { FHIR_JSON, sendJson, sendOutcome } from '../http.js';

export function smartConfiguration(state: SandboxState, routed: Routed): void {
  const origin = state.mainOrigin;
  sendJson(routed.res, 200, {
    token_endpoint: `${origin}${routed.prefix}/auth/token`,
    token_endpoint_auth_methods_supported: state.options.tokenEndpointAuthMethods,
    token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
    grant_types_supported: ['client_credentials'],
    scopes_supported: [
      'system/*.rs',
      'system/*.read',
      ...EXPORTABLE_TYPES.flatMap((t) => [`system/${t}.rs`, `system/${t}.read`]),
    ],
    capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
    registration_endpoint: `${origin}/register`,
  });
}

export function capabilityStatement(state: SandboxState, routed: Routed): void {
  const base = `${state.mainOrigin}${routed.prefix}/fhir`;
  const operation = (kind: string) => ({
    name: 'export',
    definition: `http://hl7.org/fhir/uv/bulkdata/OperationDefinition/${kind}`,
  });
  sendJson(
    routed.res,
    200,
    {
      resourceType: 'CapabilityStatement',
      status: 'active',
      date: '2026-01-01',
      kind: 'instance',
      instantiates: ['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'],
      software: { name: 'fhir-bulk-export-pipeline sandbox' },
      implementation: { description: 'Synthetic FHIR Bulk Data sandbox', url: base },
      fhirVersion: '4.0.1',
      format: ['json'],
      rest: [
        {
          mode: 'server',
          security: {
            extension: [
              {
                url: 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
                extension: [{ url: 'token', valueUri: `${state.mainOrigin}${routed.prefix}/auth/token` }],
              },
            ],
            service: [
              {
                coding: [
                  {
                    system: 'http://terminology.hl7.org/CodeSystem/restful-security-service',
                    code: 'SMART-on-FHIR',
                  },
                ],
              },
            ],
          },
          resource: [
            { type: 'Patient', operation: [operation('patient-export')] },
            {
              type: 'Group',
              interaction: [{ code: 'read' }, { code: 'search-type' }],
              operation: [operation('group-export')],
            },
          ],
          operation: [operation('export')],
        },
      ],
    },
    {},
    FHIR_JSON,
  );
}

function groupResource(group: { id: string; patientIndexes: readonly number[] }) {
  return {
    resourceType: 'Group',
    id: group.id,
    type: 'person',
    actual: true,
    name: `Sandbox cohort ${group.id}`,
    quantity: group.patientIndexes.length,
  };
}

/** `GET [base]/Group` and `GET [base]/Group/[id]` (IG: a server with Group export SHOULD support them). */
export function groupRead(state: SandboxState, routed: Routed, id?: string): void {
  const grant = state.authenticate(routed);
  if (!grant) return;
  if (!scopesAllowExport(grant.scopes, 'Group')) {
    sendOutcome(routed.res, 403, 'forbidden', 'the access token does not allow reading Group');
    return;
  }
  const groups = state.dataset.groups;
  if (id === undefined) {
    sendJson(
      routed.res,
      200,
      {
        resourceType: 'Bundle',
        type: 'searchset',
        total: groups.length,
        entry: groups.map((g) => ({
          fullUrl: `${state.mainOrigin}${routed.prefix}/fhir/Group/${g.id}`,
          resource: groupResource(g),
          search: { mode: 'match' },
        })),
      },
      {},
      FHIR_JSON,
    );
    return;
  }
  const group = groups.find((g) => g.id === id);
  if (!group) {
    sendOutcome(routed.res, 404, 'not-found', `Group/${id} does not exist`);
    return;
  }
  // The whole resource, members included: a client resolves a Group's cohort from member[].entity.
  sendJson(routed.res, 200, JSON.parse(group.resource()), {}, FHIR_JSON);
}
