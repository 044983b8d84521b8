import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFhirHttp } from '../../lambdas/adapters/fhir-http.js';
import { readCohort } from '../../lambdas/services/group-members.js';
import {
  accessToken,
  registerTestClient,
  startTestSandbox,
  type TestClient,
  type TestSandbox,
} from '../sandbox/support/sandbox.js';

/** The cohort reader of patients-chunked exports, against the sandbox over real HTTP. */
describe('readCohort (GET Group/{id})', () => {
  let t: TestSandbox;
  let client: TestClient;
  const fhir = createFhirHttp();
  beforeAll(async () => {
    t = await startTestSandbox();
    client = await registerTestClient(t.sandbox);
  });
  afterAll(() => t.sandbox.close());

  it("lists the Group's current members as patient references, in order", async () => {
    // Prepare
    const group = t.sandbox.dataset.groups.find((candidate) => candidate.id === 'cohort')!;
    // Act
    const cohort = await readCohort(fhir, t.sandbox.baseUrl, 'cohort', await accessToken(t, client));
    // Assess
    expect(cohort.patients).toHaveLength(group.patientIndexes.length);
    expect(cohort.patients.every((reference) => /^Patient\/[A-Za-z0-9\-.]+$/.test(reference))).toBe(true);
    expect(cohort.repeated).toBe(0);
  });

  it('refuses a Group of technical ids, saying what was read, what was searched and what was found', async () => {
    // Act
    const refused = await readCohort(
      fhir,
      t.sandbox.baseUrl,
      'cohort-technical-ids',
      await accessToken(t, client),
    ).catch((error: Error) => error);
    // Assess
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).name).toBe('ConfigurationError');
    expect((refused as Error).message).toMatch(
      /^Group\/cohort-technical-ids lists Patient\/(\S+), but GET Patient\/\1 answered 404 and Patient\?identifier=\1 found Patient\/\S+: the Group references its patients by a technical id, not the logical id the patient parameter needs/,
    );
  });

  it('names a Group the server does not have', async () => {
    await expect(
      readCohort(fhir, t.sandbox.baseUrl, 'no-such-group', await accessToken(t, client)),
    ).rejects.toThrow('GET Group/no-such-group answered 404: export.groupId names no Group on this server');
  });
});
