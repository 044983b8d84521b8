import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessToken, registerTestClient, startTestSandbox, type TestSandbox } from './support/sandbox.js';

describe('discovery', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox();
  });
  afterAll(() => t.sandbox.close());

  it('serves .well-known/smart-configuration for backend services', async () => {
    // Act
    const response = await fetch(`${t.sandbox.baseUrl}/.well-known/smart-configuration`);
    // Assess
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const config = (await response.json()) as Record<string, unknown>;
    expect(config).toMatchObject({
      token_endpoint: t.sandbox.tokenUrl,
      token_endpoint_auth_methods_supported: ['private_key_jwt'],
      token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'],
      grant_types_supported: ['client_credentials'],
      capabilities: ['client-confidential-asymmetric', 'permission-v1', 'permission-v2'],
      registration_endpoint: t.sandbox.registrationUrl,
    });
    expect(config.scopes_supported).toEqual(
      expect.arrayContaining(['system/*.rs', 'system/*.read', 'system/Patient.rs']),
    );
  });

  it('serves a CapabilityStatement that instantiates Bulk Data and declares the three exports', async () => {
    // Act
    const response = await fetch(`${t.sandbox.baseUrl}/metadata`);
    // Assess
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    const cs = (await response.json()) as {
      resourceType: string;
      instantiates: string[];
      rest: {
        resource: { type: string; operation: { name: string; definition: string }[] }[];
        operation: { definition: string }[];
      }[];
    };
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.instantiates).toEqual(['http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data']);
    const rest = cs.rest[0]!;
    expect(rest.operation.map((o) => o.definition)).toEqual([
      'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export',
    ]);
    expect(rest.resource.map((r) => [r.type, r.operation[0]!.definition])).toEqual([
      ['Patient', 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export'],
      ['Group', 'http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export'],
    ]);
  });

  it('lets a client find Groups by search and read', async () => {
    // Prepare
    const token = await accessToken(t, await registerTestClient(t.sandbox));
    const auth = { authorization: `Bearer ${token}` };
    // Act
    const search = await fetch(`${t.sandbox.baseUrl}/Group`, { headers: auth });
    const read = await fetch(`${t.sandbox.baseUrl}/Group/small`, { headers: auth });
    const missing = await fetch(`${t.sandbox.baseUrl}/Group/nope`, { headers: auth });
    // Assess
    const bundle = (await search.json()) as { type: string; entry: { resource: { id: string } }[] };
    expect(bundle.type).toBe('searchset');
    expect(bundle.entry.map((e) => e.resource.id)).toEqual(t.sandbox.dataset.groups.map((g) => g.id));
    expect(await read.json()).toMatchObject({
      resourceType: 'Group',
      id: 'small',
      type: 'person',
      actual: true,
      quantity: 10,
    });
    expect(missing.status).toBe(404);
  });

  it('answers 404 + OperationOutcome to an unknown path', async () => {
    const response = await fetch(`${t.sandbox.baseUrl}/Claim/1`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');
  });
});
