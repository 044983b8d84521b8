import { readFile } from 'node:fs/promises';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findSharedWindows } from '../support/shared-windows.js';
import { type Harness, type ScenarioResult, startHarness } from './support/harness.js';

/**
 * Tokens, client assertions, private keys and resource content must never
 * reach a log line, the execution history (visible to anyone with console
 * access), a receipt, or S3 object metadata. Runs real exports, including
 * one where the server refuses the token mid-file and one whose file spans
 * several Download File invocations (checkpoints), then searches everything.
 */
const VOCABULARY =
  /"[A-Za-z_][A-Za-z0-9_]*":|(?<="(?:resourceType|status)":)"[^"]*"|(?<=[:,[])"[A-Z][A-Za-z]+"(?=[,\]}])/g;

describe('no secrets or PHI outside the data files', () => {
  let harness: Harness;
  const runs: ScenarioResult[] = [];
  beforeAll(async () => {
    harness = await startHarness();
    runs.push(await harness.exportWith({ sourceId: 'leak-happy' }));
    runs.push(await harness.exportWith({ sourceId: 'leak-401', faults: { file401: 1 } }));
    runs.push(await harness.exportWith({ sourceId: 'leak-redirect', faults: { redirectFiles: true } }));
    runs.push(await harness.exportWith({ sourceId: 'leak-failed', faults: { jobFailure: true } }));
    runs.push(
      await harness.exportWith({
        sourceId: 'leak-checkpoint',
        // The Patient file at 60 KB/s through 1-second invocations that checkpoint with 0.6 s left:
        // it takes several, each handing the next a checkpoint with 16 KiB parts uploaded.
        faults: { filesFromSecondOrigin: true, slowFile: { bytesPerSecond: 60_000, fileIndex: 0 } },
        invocationTimeoutMs: (functionName) => (functionName === 'DownloadFile' ? 1000 : 60_000),
        transfer: {
          partSizeBytes: 16 * 1024,
          settings: {
            minPartSizeBytes: 16 * 1024,
            safetyMarginMs: 600,
            baseBackoffMs: 50,
            maxBackoffMs: 400,
          },
        },
      }),
    );
    runs.push(
      await harness.exportWith({
        sourceId: 'leak-chunked',
        source: {
          export: { level: 'group', groupId: 'cohort', method: 'POST', chunk: { by: 'patients', size: 20 } },
        },
      }),
    );
  }, 180_000);
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
      // A chunk's patient list is the cohort the data selects, kept beside it in the work area
      // (never in state or logs): 'keeps a chunked cohort's patient list in the work area only' checks that.
      if (!isDataFile(key) && !key.endsWith('.patients.json'))
        places.push({ where: key, text: (await harness.getText(key)) ?? '' });
    }
    return places;
  }

  /** The receipt's file index is NDJSON too, but of receipt entries (keys, sizes, hashes): a place, not data. */
  const isDataFile = (key: string) => key.endsWith('.ndjson') && !key.endsWith('_receipt.files.ndjson');

  /** The checkpoints a run's Download File states handed on, as the execution history shows them. */
  const checkpointsOf = (run: ScenarioResult) =>
    run.run.events
      .flatMap((event) =>
        event.type === 'StateExited' && event.state?.name === 'Download Batch'
          ? [(event.state!.output as { transfer: { checkpoint: unknown } }).transfer.checkpoint]
          : [],
      )
      .filter((checkpoint) => checkpoint !== null);

  it('ran the scenarios it claims to (five successes, one failure, a 401 re-mint, checkpoints, chunks)', () => {
    expect(runs.map((run) => run.run.status)).toEqual([
      'SUCCEEDED',
      'SUCCEEDED',
      'SUCCEEDED',
      'FAILED',
      'SUCCEEDED',
      'SUCCEEDED',
    ]);
    expect(runs[5]!.receipt?.chunking?.chunks.length).toBeGreaterThan(1);
    expect(checkpointsOf(runs[4]!).length).toBeGreaterThanOrEqual(2);
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

  it('shares no 16-byte sequence with any exported line, even encoded (base64, hex)', async () => {
    const places = await everythingVisible();
    const dataKeys = (await harness.listKeys('')).filter(isDataFile);
    const exported: Buffer[] = [];
    // Masked with NULs (which no place holds) before the search: the vocabulary FHIR shares with
    // our own metadata, which is not patient data: JSON keys (`"status":`), the values of
    // `resourceType` and `status` (`in-progress` is also an export's status), and values that
    // are just a resource type's name (logs and file lists name each file's type). Everything
    // else of a line, every name, identifier, date, reference and text, is searched.
    for (const key of dataKeys) {
      const bytes = (await harness.getBytes(key))!;
      const text = bytes.toString('latin1');
      for (const match of text.matchAll(VOCABULARY))
        bytes.fill(0, match.index, match.index + match[0].length);
      exported.push(bytes);
    }
    expect(exported.reduce((bytes, file) => bytes + file.length, 0)).toBeGreaterThan(1_000_000);
    const shared = findSharedWindows(exported, places);
    expect(shared, JSON.stringify(shared)).toEqual([]);
  });

  it("keeps a chunked cohort's patient list in the work area only: no patient reference in its state or logs", async () => {
    const run = runs[5]!;
    const lists = (await harness.listKeys('')).filter((key) => key.endsWith('.patients.json'));
    expect(lists.length).toBe(run.receipt!.chunking!.chunks.length);
    for (const key of lists)
      expect(key).toMatch(/^_work\/source=leak-chunked\/execution=[^/]+\/chunks\/\d{5}\.patients\.json$/);
    const members = JSON.parse((await harness.getText(lists[0]!))!) as string[];
    expect(members.length).toBe(20);
    const visible = [
      run.logLines.join('\n'),
      JSON.stringify(run.run.events),
      JSON.stringify(run.emittedEvents),
    ];
    for (const member of members)
      for (const text of visible) expect(text.includes(`"${member}"`), member).toBe(false);
  });

  it('hands a checkpoint over as an S3 key and a byte offset, nothing more', () => {
    const checkpoints = checkpointsOf(runs[4]!);
    for (const checkpoint of checkpoints) {
      expect(Object.keys(checkpoint as object).sort()).toEqual(['byteOffset', 'key']);
      expect((checkpoint as { key: string }).key).toMatch(
        /^_work\/source=leak-checkpoint\/execution=[^/]+\/checkpoints\/000000\.\d+\.json$/,
      );
    }
  });

  it('would find a line of content hidden in a place, even base64-encoded', () => {
    // The search above must be able to fail: a leaked resource tail, as the old hash state carried it.
    const [first] = [...harness.sandbox.dataset.lines({ type: 'Patient' }, 0, 1)];
    const line = Buffer.from(first!);
    const tail = line.subarray(line.length - 40);
    const leaked = [{ where: 'a fake checkpoint', text: JSON.stringify({ tail: tail.toString('base64') }) }];
    expect(findSharedWindows([line], leaked)).toHaveLength(1);
    expect(findSharedWindows([line], [{ where: 'clean', text: '{"byteOffset":123}' }])).toEqual([]);
  });
});
