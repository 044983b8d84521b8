import { readFile } from 'node:fs/promises';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, type ScenarioResult, startHarness } from './support/harness.js';

/**
 * Tokens, client assertions, private keys and resource content must never
 * reach a log line, the execution history (visible to anyone with console
 * access), a receipt, or S3 object metadata. Runs real exports, including
 * one where the server refuses the token mid-file, then searches everything.
 */
describe('no secrets or PHI outside the data files', () => {
  let harness: Harness;
  const runs: ScenarioResult[] = [];
  beforeAll(async () => {
    harness = await startHarness();
    runs.push(await harness.exportWith({ sourceId: 'leak-happy' }));
    runs.push(await harness.exportWith({ sourceId: 'leak-401', faults: { file401: 1 } }));
    runs.push(await harness.exportWith({ sourceId: 'leak-redirect', faults: { redirectFiles: true } }));
    runs.push(await harness.exportWith({ sourceId: 'leak-failed', faults: { jobFailure: true } }));
  }, 120_000);
  afterAll(async () => {
    await harness?.close();
  });

  async function everythingVisible(): Promise<{ where: string; text: string }[]> {
    const places: { where: string; text: string }[] = [];
    for (const run of runs) {
      places.push({ where: `${run.sourceId} logs`, text: run.logLines.join('\n') });
      places.push({ where: `${run.sourceId} execution history`, text: JSON.stringify(run.run.events) });
      places.push({
        where: `${run.sourceId} output and cause`,
        text: JSON.stringify([run.run.output, run.run.error, run.run.cause]),
      });
      places.push({ where: `${run.sourceId} events`, text: JSON.stringify(run.emittedEvents) });
    }
    const keys = await harness.listKeys('');
    for (const key of keys) {
      const head = await harness.client.send(new HeadObjectCommand({ Bucket: harness.bucket, Key: key }));
      places.push({ where: `metadata of ${key}`, text: JSON.stringify(head.Metadata ?? {}) });
      // Everything that is not a data file: receipts, markers, manifests, file lists, results, watermarks, failures.
      if (!key.endsWith('.ndjson')) places.push({ where: key, text: (await harness.getText(key)) ?? '' });
    }
    return places;
  }

  it('ran the scenarios it claims to (three successes, one failure, a 401 re-mint)', () => {
    expect(runs.map((run) => run.run.status)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'FAILED']);
    const unauthorized = harness.sandbox.requestLog.filter(
      (entry) => entry.clientId === runs[1]!.clientId && entry.status === 401,
    );
    expect(unauthorized.length).toBeGreaterThan(0);
  });

  it('contains no access token and no client assertion', async () => {
    const places = await everythingVisible();
    const credentials = runs.flatMap((run) => harness.sandbox.credentialsOf(run.clientId));
    expect(credentials.length).toBeGreaterThanOrEqual(runs.length * 2);
    for (const credential of credentials) {
      for (const place of places)
        expect(place.text.includes(credential), `${place.where} leaks a credential`).toBe(false);
    }
    for (const place of places) {
      expect(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(place.text), `${place.where} holds a JWT`).toBe(false);
    }
  });

  it('contains no private key material', async () => {
    const places = await everythingVisible();
    const privateJwk = JSON.parse(await readFile(harness.key.privateKeyFile, 'utf8')) as { d: string };
    for (const place of places) expect(place.text.includes(privateJwk.d), place.where).toBe(false);
  });

  it('contains no resource content', async () => {
    const places = await everythingVisible();
    const sample = [
      ...harness.sandbox.dataset.lines({ type: 'Patient' }, 0, 5),
      ...harness.sandbox.dataset.lines({ type: 'Observation' }, 0, 5),
    ];
    const names = sample.flatMap((line) => {
      const resource = JSON.parse(line) as {
        name?: { family?: string; given?: string[] }[];
        birthDate?: string;
      };
      const name = resource.name?.[0];
      return name?.family && name.given?.[0] ? [`${name.given[0]} ${name.family}`] : [];
    });
    expect(names.length).toBe(5);
    for (const place of places) {
      // A resource body starts with its type and id; FileItem.resourceType alone is not content.
      expect(
        /"resourceType"\s*:\s*"[A-Za-z]+"\s*,\s*"id"\s*:/.test(place.text),
        `${place.where} holds a resource`,
      ).toBe(false);
      for (const line of sample) {
        expect(place.text.includes(line.slice(0, 120)), `${place.where} holds a resource line`).toBe(false);
      }
      for (const name of names)
        expect(place.text.includes(name), `${place.where} names a patient`).toBe(false);
    }
  });
});
