import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../lambdas/core/receipt.js';
import type { FileItem } from '../../lambdas/state.js';
import {
  GROUP_ID,
  type MatrixEnvironment,
  requestsOf,
  runScenario,
  startMatrixEnvironment,
  statusUrlOf,
} from './support/matrix.js';
import { assertZeroLoss } from './support/zero-loss.js';

/**
 * Bulk Data 2.0's output options against the sandbox over HTTP, with the real ASL and handlers:
 * `organizeOutputBy=Patient` (files of patient blocks of several types) and
 * `allowPartialManifests` (files listed, and downloaded, while the job still runs). The same
 * zero-loss check as the fault matrix: every resource of the cohort lands exactly once.
 */
describe('Bulk Data output options (local)', () => {
  let env: MatrixEnvironment;
  beforeAll(async () => {
    env = await startMatrixEnvironment({ patientCount: 20, retryAfterSeconds: 0 });
  }, 60_000);
  afterAll(async () => {
    await env?.close();
  });

  it('organizeOutputBy=Patient: lands the mixed files under organizedBy=Patient/ and counts each type', async () => {
    // Prepare
    const types = ['Patient', 'Condition', 'Observation'] as const;
    // Act
    const run = await runScenario(env, {
      name: 'organized by patient',
      faults: { jobDurationMs: 0 },
      source: { export: { level: 'group', groupId: GROUP_ID, types, organizeOutputBy: 'Patient' } },
    });
    // Assess
    await assertZeroLoss(env, run, { outcome: 'succeeded', types });
    const kickoff = (await requestsOf(env, run.clientId)).find((entry) => entry.path.endsWith('/$export'))!;
    expect(new URLSearchParams(kickoff.query).get('organizeOutputBy')).toBe('Patient');
    const receipt = run.result.receipt as Receipt;
    const items = (await env.getJson<FileItem[]>(
      `_work/source=${run.sourceId}/execution=${run.result.run.exportName}/files.json`,
    ))!;
    const outputs = items.filter((item) => item.kind === 'output');
    expect(outputs.length).toBeGreaterThan(1);
    for (const [at, item] of outputs.entries()) {
      expect(item.organizedBy).toBe('Patient');
      expect(item.key).toMatch(
        new RegExp(`/organizedBy=Patient/part-${String(at + 1).padStart(4, '0')}\\.ndjson$`),
      );
    }
    // One block (and header) per cohort patient with data; every type's resources counted under its own name.
    const patientsWithData = env.cohort.filter((patient) =>
      types.some((type) => env.sandbox.dataset.count({ type, patientIndexes: [patient] }) > 0),
    ).length;
    const resources = types.reduce(
      (sum, type) => sum + env.sandbox.dataset.count({ type, patientIndexes: env.cohort }),
      0,
    );
    expect(receipt.organizedBy).toEqual({
      Patient: { files: outputs.length, blocks: patientsWithData, resources, bytes: receipt.totals.bytes },
    });
    expect(receipt.totals.resources).toBe(resources);
  }, 60_000);

  it('allowPartialManifests: lands files the running job lists, then completes the set from the final manifest', async () => {
    // Prepare: a job that runs ~3 s, many small files, paged two to a page as they become ready.
    const types = ['Patient', 'Condition', 'Observation'] as const;
    // Act
    const run = await runScenario(env, {
      name: 'partial manifests',
      faults: { jobDurationMs: 3000, resourcesPerFile: 10 },
      source: { export: { level: 'group', groupId: GROUP_ID, types, allowPartialManifests: true } },
      waitOverrideMs: 150,
    });
    // Assess: every file exactly once, at stable keys, nothing else.
    await assertZeroLoss(env, run, { outcome: 'succeeded', types });
    const requests = await requestsOf(env, run.clientId);
    const kickoff = requests.find((entry) => entry.path.endsWith('/$export'))!;
    expect(new URLSearchParams(kickoff.query).get('allowPartialManifests')).toBe('true');
    const statusPath = new URL(statusUrlOf(run)!).pathname;
    const completedAt = requests.find((entry) => entry.path === statusPath && entry.status === 200)!.startMs;
    const earlyDownloads = requests.filter(
      (entry) => entry.path.startsWith('/files/') && entry.status === 200 && entry.endMs < completedAt,
    );
    const partialStatuses = requests.filter((entry) => entry.path === statusPath && entry.status === 202);
    expect(partialStatuses.length).toBeGreaterThan(1);
    expect(earlyDownloads.length, 'files downloaded while the status still answered 202').toBeGreaterThan(0);
    // The job still ran after a file had landed: a 202 came after the first download ended.
    const firstLanded = Math.min(...earlyDownloads.map((entry) => entry.endMs));
    expect(partialStatuses.some((entry) => entry.startMs > firstLanded)).toBe(true);
    // Later pages were read through their links while the job ran.
    expect(
      requests.some((entry) => entry.path.startsWith(`${statusPath}/page/`) && entry.endMs < completedAt),
    ).toBe(true);
    // Each file was fetched once: the final pass skipped the files the partial rounds had landed.
    const fileGets = requests.filter((entry) => entry.path.startsWith('/files/') && entry.status === 200);
    expect(new Set(fileGets.map((entry) => entry.path)).size).toBe(fileGets.length);
    const rounds = run.result.run.events.filter(
      (event) => event.type === 'StateEntered' && event.state?.name === 'Download Partial Files',
    );
    expect(rounds.length).toBeGreaterThan(0);
  }, 90_000);

  it('allowPartialManifests: a job that fails after files landed leaves nothing staged behind', async () => {
    // Act: files land while the job runs, then the job fails.
    const run = await runScenario(env, {
      name: 'partial manifests then a failed job',
      faults: { jobDurationMs: 2500, resourcesPerFile: 10, jobFailure: true },
      source: {
        export: { level: 'group', groupId: GROUP_ID, types: ['Observation'], allowPartialManifests: true },
      },
      waitOverrideMs: 150,
    });
    // Assess
    expect({ status: run.result.run.status, error: run.result.run.error }).toEqual({
      status: 'FAILED',
      error: 'ExportRequestRejectedError',
    });
    const requests = await requestsOf(env, run.clientId);
    expect(
      requests.filter((entry) => entry.path.startsWith('/files/') && entry.status === 200).length,
    ).toBeGreaterThan(0);
    const keys = await env.listKeys(`source=${run.sourceId}/`);
    // Only the folder's claim stays: the staged files of a given-up export are removed.
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(new RegExp(`^source=${run.sourceId}/export=[^/]+/_claim\\.json$`));
    const failure = await env.getJson<{ status: string }>(
      `_failures/source=${run.sourceId}/${run.result.run.exportName}.json`,
    );
    expect(failure?.status).toBe('failed');
  }, 90_000);
});
