import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientId } from '../../scripts/sandbox/data/model.js';
import {
  accessToken,
  getStatus,
  kickOff,
  type Manifest,
  ndjsonLines,
  registerTestClient,
  startTestSandbox,
  type TestSandbox,
} from './support/sandbox.js';

/** The sandbox's Bulk Data 2.0 output options: partial manifests and files organized by patient. */
type Page = Manifest & { link?: { relation: string; url: string }[]; outputOrganizedBy?: string };

describe('allowPartialManifests and organizeOutputBy', () => {
  let t: TestSandbox;
  beforeAll(async () => {
    t = await startTestSandbox({ resourcesPerFile: 10, partialManifestPageSize: 2 });
  });
  afterAll(() => t.sandbox.close());
  const token = async () => accessToken(t, await registerTestClient(t.sandbox));

  /** Every page from the first, following `link`. */
  async function pages(first: Page, bearer: string): Promise<Page[]> {
    const all = [first];
    for (let next = first.link?.[0]?.url; next; next = all.at(-1)!.link?.[0]?.url) {
      const response = await getStatus(next, bearer);
      expect(response.status).toBe(200);
      all.push((await response.json()) as Page);
    }
    return all;
  }

  it('lists full pages of ready files on 202, never changes them, and completes the set at 200', async () => {
    // Prepare
    const bearer = await token();
    const kickoff = await kickOff(
      `${t.sandbox.baseUrl}/$export?_type=Observation&allowPartialManifests=true`,
      bearer,
    );
    const statusUrl = kickoff.headers.get('content-location')!;
    // Act
    t.clock.advance(500);
    const early = await getStatus(statusUrl, bearer);
    const earlyPages = await pages((await early.json()) as Page, bearer);
    t.clock.advance(500);
    const done = await getStatus(statusUrl, bearer);
    const finalPages = await pages((await done.json()) as Page, bearer);
    // Assess
    expect(early.status).toBe(202);
    expect(early.headers.get('x-progress')).toBe('50% complete');
    expect(done.status).toBe(200);
    const files = finalPages.flatMap((page) => page.output);
    // Half the files ready, in whole pages of two, each unchanged in the final chain.
    const earlyFiles = earlyPages.flatMap((page) => page.output);
    expect(earlyPages.every((page) => page.output.length === 2)).toBe(true);
    expect(earlyFiles.length).toBe(2 * Math.floor(Math.floor(files.length / 2) / 2));
    expect(finalPages.slice(0, earlyPages.length).map((page) => page.output)).toEqual(
      earlyPages.map((page) => page.output),
    );
    expect(finalPages.every((page) => page.output.length <= 2)).toBe(true);
    const lines = files.reduce((sum, file) => sum + ndjsonLines(t.sandbox.fileContent(file.url)).length, 0);
    expect(lines).toBe(
      t.sandbox.dataset.count({ type: 'Observation', until: finalPages[0]!.transactionTime }),
    );
    expect(new Set(files.map((file) => file.url)).size).toBe(files.length);
  });

  it('answers 404 for a page not published yet', async () => {
    // Prepare
    const bearer = await token();
    const kickoff = await kickOff(
      `${t.sandbox.baseUrl}/$export?_type=Observation&allowPartialManifests=true`,
      bearer,
    );
    // Act
    const response = await getStatus(`${kickoff.headers.get('content-location')}/page/1`, bearer);
    // Assess
    expect(response.status).toBe(404);
  });

  it('organizes files by patient: untyped entries, each block a Parameters header and that patient’s resources', async () => {
    // Prepare
    const bearer = await token();
    const kickoff = await kickOff(
      `${t.sandbox.baseUrl}/$export?_type=Patient,Condition,Practitioner&organizeOutputBy=Patient`,
      bearer,
    );
    t.clock.advance(1000);
    // Act
    const manifest = (await (
      await getStatus(kickoff.headers.get('content-location')!, bearer)
    ).json()) as Page;
    // Assess
    expect(manifest.outputOrganizedBy).toBe('Patient');
    expect(manifest.output.every((file) => file.type === undefined)).toBe(true);
    const resources = manifest.output.flatMap(
      (file) =>
        ndjsonLines(t.sandbox.fileContent(file.url)) as { resourceType: string; parameter?: unknown }[],
    );
    expect(resources[0]).toEqual({
      resourceType: 'Parameters',
      parameter: [{ name: 'header', valueReference: { reference: `Patient/${patientId(0)}` } }],
    });
    const perType = (type: string) => resources.filter((resource) => resource.resourceType === type).length;
    expect(perType('Patient')).toBe(30);
    expect(perType('Parameters')).toBe(30);
    expect(perType('Condition')).toBe(
      t.sandbox.dataset.count({ type: 'Condition', until: t.clock.now().toISOString() }),
    );
    // Outside the Patient compartment: left out, as the IG allows.
    expect(perType('Practitioner')).toBe(0);
  });
});
