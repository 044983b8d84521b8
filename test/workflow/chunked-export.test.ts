import { PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../lambdas/core/receipt.js';
import { patientId } from '../../scripts/sandbox/data/model.js';
import { type Harness, receiptOf, startHarness } from './support/harness.js';

/**
 * Chunked exports, whole workflow: the real ASL and handlers, the sandbox FHIR
 * server over HTTP, the embedded S3. A cohort too big for one job goes as
 * several (patient slices or time windows), lands as one export with one
 * receipt and one marker, and what two chunks both carried is counted, not
 * hidden.
 */
describe('chunked exports (local)', () => {
  let harness: Harness;
  const GROUP_EXPORT = { level: 'group', groupId: 'cohort', method: 'POST' } as const;
  beforeAll(async () => {
    harness = await startHarness();
  }, 60_000);
  afterAll(async () => {
    await harness?.close();
  });

  /** Every landed data line as `resourceType/id`, read back from the published files the receipt lists. */
  async function landedResources(receipt: Receipt): Promise<string[]> {
    const found: string[] = [];
    for (const file of receipt.files!.filter((candidate) => candidate.kind === 'output')) {
      const text = (await harness.getText(file.key)) ?? '';
      for (const line of text.split('\n')) {
        if (line === '') continue;
        const resource = JSON.parse(line) as { resourceType: string; id: string };
        found.push(`${resource.resourceType}/${resource.id}`);
      }
    }
    return found;
  }

  const cohortPatients = () =>
    harness.sandbox.dataset.groups.find((group) => group.id === 'cohort')!.patientIndexes.map(patientId);

  it('a patients-chunked Group export lands what the export in one piece lands, resource for resource, with shared resources counted', async () => {
    // Prepare
    const members = cohortPatients();
    const size = Math.ceil(members.length / 3);
    // Act
    const whole = await harness.exportWith({ sourceId: 'cohort-whole', source: { export: GROUP_EXPORT } });
    const chunked = await harness.exportWith({
      sourceId: 'cohort-chunked',
      // The server lets this client run two jobs at once, and the source asks for two.
      faults: { concurrentExports: 2 },
      source: { export: { ...GROUP_EXPORT, chunk: { by: 'patients', size }, maxConcurrentJobs: 2 } },
    });
    // Assess
    expect(whole.run.status).toBe('SUCCEEDED');
    expect(chunked.run.status, chunked.run.cause).toBe('SUCCEEDED');
    const receipt = receiptOf(chunked);
    expect(receipt.chunking?.by).toBe('patients');
    expect(receipt.chunking?.reason).toBe('planned');
    expect(receipt.chunking?.chunks.map((chunk) => chunk.patients)).toStrictEqual([
      size,
      size,
      members.length - 2 * size,
    ]);
    // Each chunk was its own job, asking for its own slice of the Group, in order.
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === chunked.clientId);
    expect(jobs).toHaveLength(3);
    expect(jobs.flatMap((job) => job.received.patients ?? []).sort()).toStrictEqual([...members].sort());
    // One export, one marker, one receipt.
    const markers = (await harness.listKeys('source=cohort-chunked/')).filter((key) =>
      key.endsWith('_SUCCESS.json'),
    );
    expect(markers).toHaveLength(1);

    const expected = await landedResources(receiptOf(whole));
    const landed = await landedResources(receipt);
    expect(new Set(landed)).toStrictEqual(new Set(expected));
    const extraCopies = landed.length - new Set(landed).size;
    // Shared Practitioners and Organizations come with each chunk whose patients reference them,
    // and a Group export carries its Group in every chunk; no patient's own data is in two chunks.
    expect(extraCopies).toBeGreaterThan(0);
    const duplicated = new Set(
      landed.filter((id, at) => landed.indexOf(id) !== at).map((id) => id.split('/')[0]),
    );
    expect([...duplicated].sort()).toStrictEqual(['Group', 'Organization', 'Practitioner']);
    // The receipt counts exactly those, by resourceType/id.
    expect(receipt.duplicateResources?.extraCopies).toBe(extraCopies);
    expect(receipt.duplicateResources?.resources).toBe(
      new Set(landed.filter((id, at) => landed.indexOf(id) !== at)).size,
    );
    expect(Object.keys(receipt.duplicateResources!.byType).sort()).toStrictEqual([
      'Group',
      'Organization',
      'Practitioner',
    ]);
    // The whole cohort's watermark moves, to the earliest chunk's transactionTime.
    const earliest = receipt.chunking!.chunks.map((chunk) => chunk.transactionTime).sort()[0];
    expect(receipt.transactionTime).toBe(earliest);
    const watermark = JSON.parse((await harness.getText('_state/source=cohort-chunked/watermark.json'))!);
    expect(watermark.transactionTime).toBe(earliest);
  });

  it('a time-chunked backfill asks for each window with _since/_until and lands the window once', async () => {
    // Prepare
    const since = '2020-01-01T00:00:00.000Z';
    const until = new Date().toISOString();
    const window = `${Math.ceil((Date.parse(until) - Date.parse(since)) / 86_400_000 / 4)}d`;
    // Act
    const whole = await harness.exportWith({
      sourceId: 'window-whole',
      source: { export: GROUP_EXPORT },
      input: { since, until },
    });
    const chunked = await harness.exportWith({
      sourceId: 'window-chunked',
      source: { export: GROUP_EXPORT },
      input: { since, until, chunk: { by: 'time', window } },
    });
    // Assess
    expect(chunked.run.status, chunked.run.cause).toBe('SUCCEEDED');
    const receipt = receiptOf(chunked);
    const chunks = receipt.chunking!.chunks;
    expect(chunks.length).toBe(4);
    expect(chunks[0]!.since).toBe(since);
    expect(chunks.at(-1)!.until).toBe(until);
    for (let at = 1; at < chunks.length; at += 1) expect(chunks[at]!.since).toBe(chunks[at - 1]!.until);
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === chunked.clientId);
    expect(jobs.map((job) => [job.received.since, job.received.until])).toStrictEqual(
      chunks.map((chunk) => [chunk.since, chunk.until]),
    );
    const landed = await landedResources(receipt);
    expect(landed.sort()).toStrictEqual((await landedResources(receiptOf(whole))).sort());
    // Disjoint windows: nothing landed twice, and the receipt says so.
    expect(receipt.duplicateResources).toStrictEqual({ resources: 0, extraCopies: 0, byType: {} });
    // A backfill window never moves the daily delta's starting point.
    expect(await harness.getText('_state/source=window-chunked/watermark.json')).toBeUndefined();
  });

  it('chunkOnTimeout: a Group export that never completes is DELETEd and run as chunks that complete', async () => {
    // Prepare
    const members = cohortPatients();
    // Act
    const result = await harness.exportWith({
      sourceId: 'stuck-group',
      faults: { neverCompleteAboveMembers: 10 },
      source: {
        export: { ...GROUP_EXPORT, chunk: { by: 'patients', size: 10 }, chunkOnTimeout: '2s' },
      },
    });
    // Assess
    expect(result.run.status, result.run.cause).toBe('SUCCEEDED');
    const receipt = receiptOf(result);
    expect(receipt.chunking?.reason).toBe('timeout');
    expect(receipt.chunking?.chunks).toHaveLength(Math.ceil(members.length / 10));
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === result.clientId);
    // The stuck job in one piece, DELETEd; then one job per chunk.
    expect(jobs[0]!.received.patients).toBeUndefined();
    expect(jobs[0]!.state).toBe('deleted');
    expect(jobs.slice(1)).toHaveLength(Math.ceil(members.length / 10));
    expect(result.logLines.some((line) => line.includes('within chunkOnTimeout'))).toBe(true);
    expect(receipt.byType.Patient?.resources).toBe(members.length);
  }, 60_000);

  it('a chunk whose job fails is kicked off again alone, and the export succeeds', async () => {
    // Act
    const result = await harness.exportWith({
      sourceId: 'flaky-chunk',
      faults: { jobFailures: 1 },
      source: { export: { ...GROUP_EXPORT, chunk: { by: 'patients', size: 25 } } },
    });
    // Assess
    expect(result.run.status, result.run.cause).toBe('SUCCEEDED');
    const chunks = receiptOf(result).chunking!.chunks;
    expect(chunks[0]!.attempts).toBe(2);
    expect(chunks[0]!.failures?.map((failure) => failure.error)).toStrictEqual([
      'ExportRequestRejectedError',
    ]);
    expect(chunks.slice(1).every((chunk) => chunk.attempts === 1 && chunk.failures === undefined)).toBe(true);
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === result.clientId);
    // The failed job is DELETEd before its replacement: one job per chunk, plus the one that failed.
    expect(jobs).toHaveLength(chunks.length + 1);
    expect(jobs[0]!.received.patients).toStrictEqual(jobs[1]!.received.patients);
    expect(receiptOf(result).byType.Patient?.resources).toBe(cohortPatients().length);
  });

  it("a chunk's expired file links are refreshed from that chunk's own job, and every file lands", async () => {
    // Act: every link lives 800 ms and each file's first GET waits out a 503 (Retry-After 1 s).
    const result = await harness.exportWith({
      sourceId: 'chunk-links',
      faults: { fileLinkLifetimeMs: 800, file5xx: 1 },
      source: { export: { ...GROUP_EXPORT, chunk: { by: 'patients', size: 30 } } },
    });
    // Assess
    expect(result.run.status, result.run.cause).toBe('SUCCEEDED');
    await harness.sandbox.settled();
    const requests = harness.sandbox.requestLog.filter((entry) => entry.clientId === result.clientId);
    expect(requests.some((entry) => entry.status === 410)).toBe(true);
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === result.clientId);
    expect(jobs).toHaveLength(2);
    // Each chunk's manifest was read again at its own status URL, beyond the poll that completed it.
    for (const job of jobs) {
      const path = new URL(job.statusUrl).pathname;
      const reads = requests.filter(
        (entry) => entry.method === 'GET' && entry.path === path && entry.status === 200,
      );
      expect(reads.length, path).toBeGreaterThan(1);
    }
    expect(receiptOf(result).byType.Patient?.resources).toBe(cohortPatients().length);
  }, 60_000);

  it('time chunks on a server without _until fail at the first kick-off, saying so, and leave no job', async () => {
    // Act
    const result = await harness.exportWith({
      sourceId: 'no-until',
      faults: { untilUnsupported: true },
      source: { export: GROUP_EXPORT },
      input: {
        since: '2024-01-01T00:00:00Z',
        until: '2025-01-01T00:00:00Z',
        chunk: { by: 'time', window: '90d' },
      },
    });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('ExportRequestRejectedError');
    expect(result.run.cause).toContain(
      'time chunk 0 (2024-01-01T00:00:00.000Z to 2024-03-31T00:00:00.000Z) was refused',
    );
    expect(result.run.cause).toContain('parameter _until is not supported');
    expect(result.run.cause).toContain(
      'Time chunks need a server that supports _until; chunk by patients instead',
    );
    expect(harness.sandbox.jobs().filter((job) => job.clientId === result.clientId)).toHaveLength(0);
  });

  it('a Group that lists its patients by a technical id fails the plan, naming what it searched, before any kick-off', async () => {
    // Act
    const result = await harness.exportWith({
      sourceId: 'technical-ids',
      source: {
        export: { ...GROUP_EXPORT, groupId: 'cohort-technical-ids', chunk: { by: 'patients', size: 10 } },
      },
    });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('ConfigurationError');
    expect(result.run.cause).toMatch(
      /Group\/cohort-technical-ids lists Patient\/M\d+, but GET Patient\/M\d+ answered 404 and Patient\?identifier=M\d+ found Patient\/pt-\d+: the Group references its patients by a technical id/,
    );
    expect(harness.sandbox.jobs().filter((job) => job.clientId === result.clientId)).toHaveLength(0);
  });

  it('chunks a patient-level export by a patient list in S3, once per patient, comments and blank lines skipped', async () => {
    // Prepare
    const chosen = cohortPatients().slice(0, 10);
    const list = [
      '# cohort of the quarter',
      ...chosen.map((id) => `Patient/${id}`),
      '',
      `Patient/${chosen[0]}`,
    ];
    await harness.client.send(
      new PutObjectCommand({
        Bucket: harness.bucket,
        Key: '_cohorts/list.txt',
        Body: `${list.join('\n')}\n`,
      }),
    );
    // Act
    const result = await harness.exportWith({
      sourceId: 'listed',
      source: {
        export: {
          level: 'patient',
          method: 'POST',
          chunk: { by: 'patients', size: 4, patientsFrom: `s3://${harness.bucket}/_cohorts/list.txt` },
        },
      },
    });
    // Assess
    expect(result.run.status, result.run.cause).toBe('SUCCEEDED');
    expect(receiptOf(result).chunking?.chunks.map((chunk) => chunk.patients)).toStrictEqual([4, 4, 2]);
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === result.clientId);
    expect(jobs.map((job) => job.received.patients)).toStrictEqual([
      chosen.slice(0, 4),
      chosen.slice(4, 8),
      chosen.slice(8),
    ]);
    expect(jobs.every((job) => new URL(job.request).pathname.endsWith('/Patient/$export'))).toBe(true);
    expect(receiptOf(result).byType.Patient?.resources).toBe(10);
  });

  it('refuses a patient list with a line that is not a reference, by its line number, before any kick-off', async () => {
    // Prepare
    await harness.client.send(
      new PutObjectCommand({
        Bucket: harness.bucket,
        Key: '_cohorts/bad.txt',
        Body: 'Patient/a\nDoe, Jane\n',
      }),
    );
    // Act
    const result = await harness.exportWith({
      sourceId: 'listed-badly',
      source: {
        export: {
          level: 'patient',
          method: 'POST',
          chunk: { by: 'patients', size: 4, patientsFrom: `s3://${harness.bucket}/_cohorts/bad.txt` },
        },
      },
    });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('ConfigurationError');
    expect(result.run.cause).toContain(
      `chunk.patientsFrom s3://${harness.bucket}/_cohorts/bad.txt line 2 is not a Patient reference such as Patient/123`,
    );
    expect(result.run.cause).not.toContain('Jane');
    expect(result.logLines.some((line) => line.includes('Jane'))).toBe(false);
    expect(harness.sandbox.jobs().filter((job) => job.clientId === result.clientId)).toHaveLength(0);
  });

  it('a chunk that fails every attempt fails the export with its own error, after DELETEing every job', async () => {
    // Act: every job fails; the source allows two kick-offs per chunk.
    const result = await harness.exportWith({
      sourceId: 'failing-chunk',
      faults: { jobFailure: true },
      source: { export: { ...GROUP_EXPORT, chunk: { by: 'patients', size: 25 }, maxChunkAttempts: 2 } },
    });
    // Assess
    expect(result.run.status).toBe('FAILED');
    expect(result.run.error).toBe('ExportRequestRejectedError');
    expect(result.run.cause).toContain('the export job failed: status answered 500');
    const jobs = harness.sandbox.jobs().filter((job) => job.clientId === result.clientId);
    // Chunk 0 twice (its first job DELETEd before the second). A chunk the Map had started by
    // then may have kicked off too: every job, whoever kicked it off, is DELETEd.
    expect(jobs[0]!.received.patients).toStrictEqual(jobs[1]!.received.patients);
    expect(jobs.slice(2).every((job) => job.received.patients?.[0] !== jobs[0]!.received.patients?.[0])).toBe(
      true,
    );
    expect(jobs.map((job) => job.state)).toStrictEqual(jobs.map(() => 'deleted'));
    expect(await harness.listKeys('source=failing-chunk/')).toStrictEqual([]);
    expect(await harness.getText('_state/source=failing-chunk/lock.json')).toBeUndefined();
  });
});
