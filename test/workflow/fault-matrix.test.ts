import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExportableType } from '../../scripts/sandbox/data/types.js';
import {
  MATRIX_TRANSFER,
  type MatrixEnvironment,
  requestsOf,
  runScenario,
  type Scenario,
  type ScenarioRun,
  startMatrixEnvironment,
  statusUrlOf,
  waitSecondsOf,
} from './support/matrix.js';
import { assertZeroLoss, exportRootOf, type ZeroLossExpectation } from './support/zero-loss.js';

/**
 * The fault matrix: the whole workflow (the real ASL and handlers, the
 * sandbox over HTTP, the embedded S3), once per fault the sandbox can inject,
 * each followed by the same zero-loss check (support/zero-loss.ts). Scenarios
 * run side by side, each with its own client and source id. docs/reliability.md
 * lists them with what they show.
 */

interface MatrixCase {
  /** The fault, as the sandbox spells it. */
  readonly fault: string;
  /** What the pipeline must do about it (the test's name says both). */
  readonly behaviour: string;
  /** The scenario, or how to make it from the environment (offsets computed from the dataset). */
  readonly scenario: Omit<Scenario, 'name'> | ((env: MatrixEnvironment) => Omit<Scenario, 'name'>);
  readonly expect: ZeroLossExpectation;
  /** What this fault should visibly have caused, beyond the invariant. */
  readonly observe?: (env: MatrixEnvironment, run: ScenarioRun) => Promise<void> | void;
}

const NOT_KICKED_OFF = { serverJob: 'none' } as const;
const ORACLE_TYPES: readonly ExportableType[] = ['Patient', 'Encounter', 'Observation', 'Condition'];

/** Statuses of this client's requests whose path matches, in the order the sandbox answered them. */
async function statuses(env: MatrixEnvironment, run: ScenarioRun, path: RegExp, method = 'GET') {
  return (await requestsOf(env, run.clientId))
    .filter((entry) => entry.method === method && path.test(entry.path))
    .map((entry) => entry.status);
}
/** The run's log lines at warn with this message, parsed. */
function warnings(run: ScenarioRun, message: string): Record<string, unknown>[] {
  return run.logLines
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line.level === 'warn' && line.message === message);
}
const KICK_OFF = /\/\$export$/;
const STATUS = /^\/export-status\//;
const FILES = /^\/files\//;
const TOKEN = /\/auth\/token$/;

/** Bytes of the first `lines` lines of the cohort's Patient file: a body cut exactly at a line end. */
function patientLineEnd(env: MatrixEnvironment, lines: number): number {
  let bytes = 0;
  for (const line of env.sandbox.dataset.lines({ type: 'Patient', patientIndexes: env.cohort }, 0, lines))
    bytes += Buffer.byteLength(line) + 1;
  return bytes;
}

const CASES: readonly MatrixCase[] = [
  {
    fault: 'none',
    behaviour: 'lands every resource once, byte for byte, then the receipt and the marker',
    scenario: {},
    expect: { outcome: 'succeeded' },
  },
  // Kick-off
  {
    fault: 'kickoff429=2',
    behaviour: 'waits out Retry-After (clamped to the 5 s floor) and succeeds',
    scenario: { faults: { kickoff429: 2 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect(await statuses(env, run, KICK_OFF)).toEqual([429, 429, 202]);
      expect(waitSecondsOf(run, 'Wait Before Retrying Kick-Off')).toEqual([5, 5]);
      // Each 429 is logged with the wait chosen and why.
      expect(
        warnings(run, 'kick-off refused; waiting before the next attempt').map(
          ({ attempt, reason, retryAfterSeconds, waitSeconds }) => ({
            attempt,
            reason,
            retryAfterSeconds,
            waitSeconds,
          }),
        ),
      ).toEqual(
        [1, 2].map((attempt) => ({
          attempt,
          reason: 'kick-off answered 429: error throttled Injected fault (kickoff429): too many requests',
          retryAfterSeconds: 1,
          waitSeconds: 5,
        })),
      );
    },
  },
  {
    fault: 'kickoff503=2',
    behaviour: 'waits out Retry-After and succeeds',
    scenario: { faults: { kickoff503: 2 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect(await statuses(env, run, KICK_OFF)).toEqual([503, 503, 202]);
    },
  },
  {
    fault: 'kickoff429=20',
    behaviour: 'gives up after 15 refused kick-offs with ExportRequestRejectedError',
    scenario: { faults: { kickoff429: 20 }, waitOverrideMs: 20 },
    expect: {
      outcome: { error: 'ExportRequestRejectedError', cause: 'kick-off still refused after 15 attempts' },
      ...NOT_KICKED_OFF,
    },
    async observe(env, run) {
      expect(await statuses(env, run, KICK_OFF)).toEqual(Array(15).fill(429));
    },
  },
  {
    fault: 'kickoffErrorStatus=400',
    behaviour: 'fails at once with ExportRequestRejectedError and the OperationOutcome',
    scenario: { faults: { kickoffErrorStatus: 400 } },
    expect: {
      outcome: {
        error: 'ExportRequestRejectedError',
        cause: 'kick-off was rejected with HTTP 400: error processing Injected fault (kickoffErrorStatus)',
      },
      ...NOT_KICKED_OFF,
    },
  },
  {
    fault: 'kickoffErrorStatus=500',
    behaviour: 'fails with ExportRequestRejectedError (a 500 with an OperationOutcome that is not transient)',
    scenario: { faults: { kickoffErrorStatus: 500 } },
    expect: {
      outcome: {
        error: 'ExportRequestRejectedError',
        cause: 'kick-off was rejected with HTTP 500: error exception Injected fault (kickoffErrorStatus)',
      },
      ...NOT_KICKED_OFF,
    },
  },
  // Status
  {
    fault: 'status5xx=2',
    behaviour: 'rides out 503s with a plain-text body and succeeds',
    scenario: { faults: { status5xx: 2, jobDurationMs: 0 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect((await statuses(env, run, STATUS)).slice(0, 3)).toEqual([503, 503, 200]);
    },
  },
  {
    fault: 'statusTransient=2',
    behaviour: 'rides out OperationOutcome `transient` 500s and succeeds',
    scenario: { faults: { statusTransient: 2, jobDurationMs: 0 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect((await statuses(env, run, STATUS)).slice(0, 3)).toEqual([500, 500, 200]);
    },
  },
  {
    fault: 'status5xx=5 with maxConsecutiveTransientErrors 2',
    behaviour: 'fails with TransientServerError after the third 503 in a row',
    scenario: { faults: { status5xx: 5 }, source: { maxConsecutiveTransientErrors: 2 } },
    expect: {
      outcome: {
        error: 'TransientServerError',
        cause: 'status failed 3 times in a row (limit maxConsecutiveTransientErrors 2)',
      },
    },
  },
  {
    fault: 'status429=2',
    behaviour: 'backs off harder than asked (doubling the wait) and succeeds',
    scenario: { faults: { status429: 2, jobDurationMs: 0 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect((await statuses(env, run, STATUS)).slice(0, 3)).toEqual([429, 429, 200]);
      expect(waitSecondsOf(run, 'Wait For Export')).toEqual([5, 10, 20]);
      expect(
        warnings(run, 'status polled too fast; backing off').map(({ reason, waitSeconds }) => ({
          reason,
          waitSeconds,
        })),
      ).toEqual(
        [10, 20].map((waitSeconds) => ({
          reason: 'status answered 429: error throttled Injected fault (status429): polling too frequently',
          waitSeconds,
        })),
      );
    },
  },
  {
    fault: 'statusRetryAfterSeconds=100000',
    behaviour: 'clamps the wait to the 300 s ceiling and succeeds',
    scenario: { faults: { statusRetryAfterSeconds: 100_000, jobDurationMs: 1500 } },
    expect: { outcome: 'succeeded' },
    observe(_env, run) {
      const waits = waitSecondsOf(run, 'Wait For Export');
      expect(waits.length).toBeGreaterThan(1);
      expect(waits.slice(1)).toEqual(Array(waits.length - 1).fill(300));
    },
  },
  {
    fault: 'statusRetryAfterRaw=soon',
    behaviour: 'ignores a garbage Retry-After: exponential backoff from 15 s',
    scenario: { faults: { statusRetryAfterRaw: 'soon', jobDurationMs: 1500 } },
    expect: { outcome: 'succeeded' },
    observe(_env, run) {
      const waits = waitSecondsOf(run, 'Wait For Export');
      expect(waits.slice(0, 3)).toEqual([5, 15, 30].slice(0, Math.min(3, waits.length)));
      expect(waits.length).toBeGreaterThan(1);
    },
  },
  {
    fault: 'statusRetryAfterRaw=-30',
    behaviour: 'ignores a negative Retry-After: backoff from 15 s',
    scenario: { faults: { statusRetryAfterRaw: '-30', jobDurationMs: 1500 } },
    expect: { outcome: 'succeeded' },
    observe(_env, run) {
      expect(waitSecondsOf(run, 'Wait For Export')[1]).toBe(15);
    },
  },
  {
    fault: 'statusRetryAfterRaw=<HTTP-date 2 h ahead>',
    behaviour: 'clamps an HTTP-date hours away to the 300 s ceiling',
    scenario: {
      faults: {
        statusRetryAfterRaw: new Date(Date.now() + 2 * 3_600_000).toUTCString(),
        jobDurationMs: 1500,
      },
    },
    expect: { outcome: 'succeeded' },
    observe(_env, run) {
      expect(waitSecondsOf(run, 'Wait For Export')[1]).toBe(300);
    },
  },
  {
    fault: 'statusRetryAfterRaw=<HTTP-date in the past>',
    behaviour: 'polls again after the 5 s floor',
    scenario: { faults: { statusRetryAfterRaw: 'Fri, 31 Dec 1999 23:59:59 GMT', jobDurationMs: 1500 } },
    expect: { outcome: 'succeeded' },
    observe(_env, run) {
      expect(waitSecondsOf(run, 'Wait For Export')[1]).toBe(5);
    },
  },
  {
    fault: 'statusErrorStatus=400',
    behaviour: 'fails with ExportRequestRejectedError and DELETEs the job',
    scenario: { faults: { statusErrorStatus: 400 } },
    expect: {
      outcome: { error: 'ExportRequestRejectedError', cause: 'the export job failed: status answered 400' },
    },
  },
  {
    fault: 'jobFailure',
    behaviour: 'fails with ExportRequestRejectedError and DELETEs the job',
    scenario: { faults: { jobFailure: true } },
    expect: {
      outcome: {
        error: 'ExportRequestRejectedError',
        cause: 'the export job failed: status answered 500: error exception Injected fault (jobFailure)',
      },
    },
  },
  {
    fault: 'jobExpiry',
    behaviour: 'fails with ExportJobGoneError; the DELETE is still attempted',
    scenario: { faults: { jobExpiry: true } },
    expect: {
      outcome: {
        error: 'ExportJobGoneError',
        cause: 'status answered 404: the export job expired or was cancelled',
      },
      serverJob: 'delete-attempted',
    },
  },
  {
    fault: 'fixedTransactionTime=2999-01-01T00:00:00Z',
    behaviour: 'refuses a transactionTime from the future with InvalidManifestError; the watermark stays',
    scenario: { faults: { fixedTransactionTime: '2999-01-01T00:00:00Z' } },
    expect: {
      outcome: {
        error: 'InvalidManifestError',
        cause:
          /completion manifest transactionTime 2999-01-01T00:00:00Z is \d+ years ahead of this client's clock .*maxClockSkewSeconds allows 300 s/,
      },
    },
  },
  {
    fault: 'duplicateManifestEntry=0',
    behaviour: 'lands a file listed twice once, counts it once, warns, and says so in the receipt',
    scenario: { faults: { duplicateManifestEntry: 0 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const receipt = run.result.receipt!;
      const [first] = receipt.files!;
      expect(receipt.files!).toHaveLength(17);
      expect(receipt.filesListedMoreThanOnce).toEqual([
        { kind: 'output', type: first!.type, key: first!.key, timesListed: 2 },
      ]);
      expect(warnings(run, 'the manifest lists the same file more than once; each lands once')).toEqual([
        expect.objectContaining({ files: 1, extraListings: 1, landingAt: [first!.key] }),
      ]);
      const path = `/${first!.type}.1.ndjson`;
      const fetched = (await requestsOf(env, run.clientId)).filter(
        (entry) => FILES.test(entry.path) && entry.path.endsWith(path),
      );
      expect(fetched.map((entry) => entry.status)).toEqual([200]);
    },
  },
  {
    fault: 'errorFile',
    behaviour:
      'fails with ServerFileError naming the server\'s reasons (serverFileErrors "fail"): counts that add up are no proof the export is whole',
    scenario: { faults: { errorFile: true } },
    expect: {
      outcome: {
        error: 'ServerFileError',
        cause:
          /the server reported \d+ failing issue\(s\) in the manifest's error\[\] \(\d+ error\): type \w+: error processing; .*serverFileErrors is "fail"/,
      },
    },
  },
  {
    fault: 'someFilesFailed',
    behaviour:
      'fails with ServerFileError naming the short files and the server\'s severities and codes (serverFileErrors "fail"), not a bare count mismatch',
    scenario: { faults: { someFilesFailed: true } },
    expect: {
      outcome: {
        error: 'ServerFileError',
        cause:
          /the server reported \d+ failing issue\(s\) in the manifest's error\[\] \(1 fatal, \d+ error; 1 warning\/information issue\(s\) not counted\): file \d+ \(source=[^)]+\/type=(\w+)\/part-0002\.ndjson\): fatal exception; .*serverFileErrors is "fail"/,
      },
    },
  },
  {
    fault: 'someFilesFailed + serverFileErrors "accept"',
    behaviour:
      'lands what the server delivered as a partial export: _PARTIAL.json, receipt complete: false, per file expected/delivered/missing and the reasons',
    scenario: { faults: { someFilesFailed: true }, source: { serverFileErrors: 'accept' } },
    // Per file expected/delivered/missing, line by line against the sandbox: assertZeroLoss ('partial').
    expect: { outcome: 'partial' },
    observe(_env, run) {
      const reported = run.result.receipt!.serverFileErrors!;
      // One issue per failed file, each naming it; the information issue reports nothing.
      expect(reported).toMatchObject({
        policy: 'accept',
        issues: { fatal: 1, error: reported.failures - 1, warning: 0, information: 1, other: 0 },
        files: reported.failures,
        byType: {},
        exportWide: [],
      });
      const [first] = reported.firstFiles;
      const type = /\/type=(\w+)\/part-0002\.ndjson$/.exec(first!.key)?.[1];
      expect(first).toEqual({
        key: expect.stringMatching(/\/type=\w+\/part-0002\.ndjson$/),
        type,
        expected: first!.delivered + first!.missing!,
        delivered: 1,
        missing: expect.any(Number),
        reasons: [`fatal exception: Failed to export ${type}.2.ndjson`],
      });
      const [event] = run.result.emittedEvents;
      expect(event!.detail).toMatchObject({
        status: 'partial',
        complete: false,
        completionMarkerKey: expect.stringMatching(/\/_PARTIAL\.json$/),
      });
    },
  },
  // Tokens
  {
    fault: 'tokenLifetimeSeconds=2',
    behaviour: 'mints a fresh token before each use; no request is refused',
    scenario: { faults: { tokenLifetimeSeconds: 2, jobDurationMs: 2500 }, waitOverrideMs: 500 },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const requests = await requestsOf(env, run.clientId);
      expect(requests.filter((entry) => TOKEN.test(entry.path)).length).toBeGreaterThan(2);
      expect(requests.filter((entry) => entry.status === 401)).toEqual([]);
    },
  },
  {
    fault: 'token400=2',
    behaviour: "retries Epic's bare 400s and succeeds",
    scenario: { faults: { token400: 2 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect((await statuses(env, run, TOKEN, 'POST')).slice(0, 3)).toEqual([400, 400, 200]);
    },
  },
  {
    fault: 'token400=1000',
    behaviour: 'treats bare 400s that never stop as a refusal: TokenRequestError',
    scenario: { faults: { token400: 1000 } },
    expect: {
      outcome: { error: 'TokenRequestError', cause: /token endpoint .* failed after \d+ attempts/ },
      ...NOT_KICKED_OFF,
    },
  },
  {
    fault: 'tokenExpiresInAsString',
    behaviour: 'accepts `expires_in` as a string (CMS BCDA)',
    scenario: { faults: { tokenExpiresInAsString: true } },
    expect: { outcome: 'succeeded' },
  },
  // Files
  {
    fault: 'file401=1',
    behaviour: 'hands back for a fresh token and resumes every file',
    scenario: { faults: { file401: 1 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const files = await statuses(env, run, FILES);
      expect(files.filter((status) => status === 401)).toHaveLength(17);
    },
  },
  {
    fault: 'file404=2',
    behaviour: 'retries transient 404s (CMS) and succeeds',
    scenario: { faults: { file404: 2 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      expect((await statuses(env, run, FILES)).filter((status) => status === 404)).toHaveLength(34);
    },
  },
  {
    fault: 'file429=1',
    behaviour: 'honours Retry-After within the download and succeeds',
    scenario: { faults: { file429: 1 } },
    expect: { outcome: 'succeeded' },
  },
  {
    fault: 'file5xx=2',
    behaviour: 'retries 503s within the download and succeeds',
    scenario: { faults: { file5xx: 2 } },
    expect: { outcome: 'succeeded' },
  },
  {
    fault: 'dropAfterBytes={bytes:1000} + jobDurationMs=1500',
    behaviour: 'resumes a cut gzip body undecoded with Range, naming the version by its Last-Modified date',
    // The export takes 1.5 s, so its files' Last-Modified is strong (over a second old) when fetched.
    scenario: { faults: { dropAfterBytes: { bytes: 1000 }, jobDurationMs: 1500 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const requests = (await requestsOf(env, run.clientId)).filter((entry) => FILES.test(entry.path));
      // Every file whose gzip body is over 1000 bytes was cut once, then resumed: the gzip
      // variant's ETag names gzip bytes, but the date names the file, so If-Range lets the
      // identity range through. (Each cut keeps all zlib had decoded, so there is always a line.)
      const cut = requests.filter((entry) => entry.fault === 'dropAfterBytes' && !entry.completed);
      expect(cut.length).toBeGreaterThan(10);
      for (const { path } of cut) {
        expect(requests.filter((entry) => entry.path === path).map((entry) => entry.status)).toEqual([
          200, 206,
        ]);
      }
    },
  },
  {
    fault: 'dropAfterBytes={bytes:777,times:3}',
    behaviour: 'resumes mid-line three times per file',
    scenario: { faults: { dropAfterBytes: { bytes: 777, times: 3 } } },
    expect: { outcome: 'succeeded' },
  },
  {
    fault: 'dropAfterBytes={bytes:<10 Patient lines>,fileIndex:0} + filesFromSecondOrigin',
    behaviour: 'resumes an identity body cut exactly at a line end',
    scenario: (env) => ({
      faults: {
        filesFromSecondOrigin: true,
        dropAfterBytes: { bytes: patientLineEnd(env, 10), fileIndex: 0 },
      },
    }),
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const manifest = (await env.getJson<{ files: { url: string }[] }>(
        `_work/source=${run.sourceId}/execution=${run.result.run.executionName}/manifest.json`,
      ))!;
      const cut = patientLineEnd(env, 10);
      // The precondition: the cut really is at a line end of the file served.
      expect(env.sandbox.fileContent(manifest.files[0]!.url)[cut - 1]).toBe(0x0a);
      const patientFile = (await requestsOf(env, run.clientId)).filter((entry) =>
        entry.path.endsWith('/Patient.1.ndjson'),
      );
      expect(patientFile.map((entry) => [entry.status, entry.completed])).toEqual([
        [200, false],
        [206, true],
      ]);
    },
  },
  {
    fault: 'dropAfterBytes={bytes:0,times:2}',
    behaviour: 'retries bodies cut before their first byte',
    scenario: { faults: { dropAfterBytes: { bytes: 0, times: 2 } } },
    expect: { outcome: 'succeeded' },
  },
  {
    fault: 'slowFile={stallAfterBytes:40000,stallMs:3000,fileIndex:0} + filesFromSecondOrigin',
    behaviour: 'cuts each stall with the idle timeout and resumes with Range',
    scenario: {
      faults: {
        filesFromSecondOrigin: true,
        slowFile: { stallAfterBytes: 40_000, stallMs: 3000, fileIndex: 0 },
      },
      fileIdleTimeoutMs: 300,
    },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const patientFile = (await requestsOf(env, run.clientId)).filter((entry) =>
        entry.path.endsWith('/Patient.1.ndjson'),
      );
      expect(patientFile.map((entry) => [entry.status, entry.completed])).toEqual([
        [200, false],
        [206, false],
        [206, true],
      ]);
    },
  },
  {
    fault:
      'slowFile={stallAfterBytes:1000,stallMs:3000,fileIndex:14} + jobDurationMs=1500, maxAttempts 2 (gzip, then every response)',
    behaviour: 'keeps going through more stalls than attempts, since each resumed attempt made progress',
    scenario: {
      // 1.5 s: the file's Last-Modified is strong by the time it is fetched, so the cut gzip body resumes.
      faults: { slowFile: { stallAfterBytes: 1000, stallMs: 3000, fileIndex: 14 }, jobDurationMs: 1500 },
      fileIdleTimeoutMs: 250,
      transfer: { ...MATRIX_TRANSFER, settings: { ...MATRIX_TRANSFER.settings, maxAttempts: 2 } },
    },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const practitioner = (await requestsOf(env, run.clientId)).filter((entry) =>
        entry.path.endsWith('/Practitioner.1.ndjson'),
      );
      // More cuts than the 2 attempts a file gets in a row without progress, every one resumed.
      expect(practitioner.filter((entry) => !entry.completed).length).toBeGreaterThan(2);
      expect(practitioner.map((entry) => entry.status)).toEqual([
        200,
        ...practitioner.slice(1).map(() => 206),
      ]);
      expect(practitioner.at(-1)).toMatchObject({ status: 206, completed: true });
    },
  },
  {
    fault: 'malformedLine={type:Observation,line:150}',
    behaviour:
      'fails with InvalidNdjsonError under the default policy, after the retry pass; nothing is presented complete; resumable (e.g. after switching to quarantine)',
    scenario: { faults: { malformedLine: { type: 'Observation', line: 150 } } },
    expect: {
      outcome: { error: 'InvalidNdjsonError', cause: 'NDJSON line 50 (byte offset', resumable: true },
    },
  },
  {
    fault: 'malformedLine={type:Observation,line:150} + invalidLinePolicy quarantine',
    behaviour: 'succeeds; the bad line is quarantined and counted in the receipt',
    scenario: {
      faults: { malformedLine: { type: 'Observation', line: 150 } },
      source: { invalidLinePolicy: 'quarantine' },
    },
    expect: { outcome: 'succeeded', quarantined: { Observation: 1 } },
    observe(_env, run) {
      expect(run.result.receipt?.invalidLinesQuarantined).toBe(1);
    },
  },
  {
    fault: 'countMismatch={type:Condition,delta:1}',
    behaviour:
      'fails with VerificationError after the retry pass: the manifest count is not what the file held; resumable',
    scenario: { faults: { countMismatch: { type: 'Condition', delta: 1 } } },
    expect: {
      outcome: {
        error: 'VerificationError',
        cause: 'the manifest says 101 resources, the file had 100',
        resumable: true,
      },
    },
  },
  {
    fault: 'filesFromSecondOrigin',
    behaviour: 'downloads presigned URLs without an Authorization header',
    scenario: { faults: { filesFromSecondOrigin: true } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const second = (await requestsOf(env, run.clientId)).filter(
        (entry) => entry.origin === env.sandbox.secondOrigin,
      );
      expect(second).toHaveLength(17);
      expect(second.filter((entry) => entry.hasAuthorization)).toEqual([]);
    },
  },
  {
    fault: 'redirectFiles',
    behaviour: 'follows 307s to presigned URLs and never forwards Authorization to the other origin',
    scenario: { faults: { redirectFiles: true } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const requests = await requestsOf(env, run.clientId);
      const main = requests.filter((entry) => entry.origin === env.sandbox.origin && FILES.test(entry.path));
      const second = requests.filter((entry) => entry.origin === env.sandbox.secondOrigin);
      expect(main.map((entry) => [entry.status, entry.hasAuthorization])).toEqual(
        Array(17).fill([307, true]),
      );
      expect(second).toHaveLength(17);
      expect(second.filter((entry) => entry.hasAuthorization)).toEqual([]);
    },
  },
  {
    fault: 'resourcesPerFile=7',
    behaviour: 'lands many small files (Oracle Health)',
    scenario: { faults: { resourcesPerFile: 7 } },
    expect: { outcome: 'succeeded' },
    observe(_env, run) {
      expect(run.result.receipt!.files!.length).toBeGreaterThan(130);
    },
  },
  {
    fault: 'groupExportOnly + rejectRepeatedType + redirectFiles (Oracle Health)',
    behaviour: 'succeeds with a Group export and a comma-joined _type',
    scenario: {
      faults: { groupExportOnly: true, rejectRepeatedType: true, redirectFiles: true, resourcesPerFile: 40 },
      source: {
        export: { level: 'group', groupId: 'cohort', types: ORACLE_TYPES, typeParameterStyle: 'comma' },
      },
    },
    expect: { outcome: 'succeeded', types: ORACLE_TYPES },
    async observe(env, run) {
      const kickOff = (await requestsOf(env, run.clientId)).find((entry) => KICK_OFF.test(entry.path))!;
      expect(kickOff.path).toBe('/fhir/Group/cohort/$export');
      expect(new URLSearchParams(kickOff.query).getAll('_type')).toEqual([ORACLE_TYPES.join(',')]);
    },
  },
  {
    fault: 'requireGroupScope + extraScopes system/Group.read (eClinicalWorks)',
    behaviour: 'succeeds with the extra Group scope',
    scenario: {
      faults: { requireGroupScope: true },
      source: {
        export: { level: 'group', groupId: 'cohort', types: ['Patient', 'Condition'] },
        extraScopes: ['system/Group.read'],
      },
    },
    expect: { outcome: 'succeeded', types: ['Patient', 'Condition'] },
  },
  {
    fault: 'ignoreTypeFilter',
    behaviour: 'lands exactly what the server sent, all of Observation, though a filter was asked',
    scenario: {
      faults: { ignoreTypeFilter: true },
      source: {
        export: {
          level: 'group',
          groupId: 'cohort',
          types: ['Observation'],
          typeFilters: ['Observation?category=laboratory'],
        },
      },
    },
    expect: { outcome: 'succeeded', types: ['Observation'] },
  },
  {
    fault: 'fileLinkLifetimeMs=800 + file5xx=1',
    behaviour: 'reads the manifest again for a fresh link after each 410 and lands every file',
    // The 503's Retry-After (1 s) outlasts every link: each file meets a 410 mid-transfer. A fresh
    // link must still be alive at the GET that follows the manifest read: at 250 ms it was not,
    // under load (two busy cores), and the file failed as a link refused at once.
    scenario: { faults: { fileLinkLifetimeMs: 800, file5xx: 1 } },
    expect: { outcome: 'succeeded' },
    async observe(env, run) {
      const requests = await requestsOf(env, run.clientId);
      const expired = requests.filter((entry) => FILES.test(entry.path) && entry.status === 410);
      expect(new Set(expired.map((entry) => entry.path)).size).toBe(17);
      const path = new URL(statusUrlOf(run)!).pathname;
      const manifestReads = requests.filter(
        (entry) => entry.method === 'GET' && entry.path === path && entry.status === 200,
      );
      expect(manifestReads.length).toBeGreaterThan(1);
    },
  },
];

describe.concurrent('fault matrix: the whole workflow under every sandbox fault, zero loss after each', () => {
  let env: MatrixEnvironment;
  const started = Date.now();
  let ran = 0;

  beforeAll(async () => {
    env = await startMatrixEnvironment();
  }, 60_000);
  afterAll(async () => {
    await env?.close();
    console.info(`fault matrix: ${ran} scenarios in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 60_000);

  for (const entry of CASES) {
    it(`${entry.fault} → ${entry.behaviour}`, async () => {
      const scenario = typeof entry.scenario === 'function' ? entry.scenario(env) : entry.scenario;
      const run = await runScenario(env, { name: entry.fault, ...scenario });
      ran += 1;
      await assertZeroLoss(env, run, entry.expect);
      await entry.observe?.(env, run);
    }, 120_000);
  }

  it('fixedTransactionTime=<past instant> → two exports with the same transactionTime both land, in folders of their own', async () => {
    // Prepare: a server that stamps every export with one transactionTime, inside the dataset's history,
    // so the second export (since that instant) holds a different, smaller set of resources.
    const transactionTime = '2025-07-01T00:00:00.000Z';
    const { clientId } = await env.sandbox.registerClient({
      jwks: { keys: [env.key.publicJwk] },
      faults: { fixedTransactionTime: transactionTime },
    });
    const name = 'fixedTransactionTime';
    // Act
    const first = await runScenario(env, { name, clientId });
    ran += 1;
    const second = await runScenario(env, { name, clientId, sourceId: first.sourceId });
    ran += 1;
    // Assess: each lands whole, and the first is still whole after the second.
    await assertZeroLoss(env, second, {
      outcome: 'succeeded',
      since: transactionTime,
      watermarkAdvances: false,
    });
    // The first run again, against the bucket as it is now (the second's folder set aside).
    const secondKeys = await env.listKeys(exportRootOf(second)!);
    await assertZeroLoss(
      env,
      { ...first, keysBefore: [...first.keysBefore, ...secondKeys] },
      { outcome: 'succeeded' },
    );
    expect(second.result.receipt!.request.since).toBe(transactionTime);
    expect(second.result.receipt!.totals.resources).toBeGreaterThan(0);
    expect(second.result.receipt!.totals.resources).toBeLessThan(first.result.receipt!.totals.resources);
    const folder = `source=${first.sourceId}/export=2025-07-01T000000.000Z`;
    expect([exportRootOf(first), exportRootOf(second)]).toEqual([
      `${folder}/`,
      `${folder}_${second.result.run.executionName}/`,
    ]);
    expect(
      warnings(second, 'another export holds the folder of this transactionTime; landing beside it'),
    ).toEqual([
      expect.objectContaining({
        folder: `${folder}/`,
        heldBy: `execution ${first.result.run.executionName} started ${first.result.receipt!.startedAt}`,
      }),
    ]);
    // Nothing unlisted: every object of the source is in one of the two receipts, or is a claim, receipt or marker.
    const listed = new Set(
      [first, second].flatMap((run) => {
        const root = exportRootOf(run)!;
        return [
          ...run.result.receipt!.files!.map((file) => file.key),
          `${root}_claim.json`,
          `${root}_receipt.json`,
          `${root}_receipt.files.ndjson`,
          `${root}_SUCCESS.json`,
        ];
      }),
    );
    expect(await env.listKeys(`source=${first.sourceId}/`)).toEqual([...listed].sort());

    // A later run that reuses the second's execution name (a local run with a fixed name) is
    // not a retry of it: both folders are taken, so it is refused and writes nothing there.
    const snapshot = async () => {
      const objects = new Map<string, string>();
      for (const key of await env.listKeys(`source=${first.sourceId}/`))
        objects.set(key, (await env.getText(key))!);
      return objects;
    };
    const before = await snapshot();
    const reused = await runScenario(env, {
      name,
      clientId,
      sourceId: first.sourceId,
      executionName: second.result.run.executionName,
    });
    ran += 1;
    expect({ status: reused.result.run.status, error: reused.result.run.error }).toEqual({
      status: 'FAILED',
      error: 'ExportFolderTakenError',
    });
    expect(reused.result.run.cause).toContain(
      `both folders for transactionTime ${transactionTime} belong to other runs: ${folder}/ (execution ${first.result.run.executionName} started `,
    );
    expect(await snapshot()).toEqual(before);
  }, 120_000);

  it('fixedTransactionTime=2999-01-01T00:00:00Z, then a healthy server → the next since=auto export is not poisoned', async () => {
    // Prepare
    const poisoned = await runScenario(env, {
      name: 'future transactionTime',
      faults: { fixedTransactionTime: '2999-01-01T00:00:00Z' },
    });
    ran += 1;
    // Act
    const next = await runScenario(env, { name: 'future transactionTime', sourceId: poisoned.sourceId });
    ran += 1;
    // Assess: the refused export moved nothing, so the next one is a full export, not a _since=2999 one.
    expect(poisoned.result.run.error).toBe('InvalidManifestError');
    await assertZeroLoss(env, next, { outcome: 'succeeded' });
    const kickOff = (await requestsOf(env, next.clientId)).find((entry) => KICK_OFF.test(entry.path))!;
    expect(new URLSearchParams(kickOff.query).get('_since')).toBeNull();
    expect(Date.parse(next.result.receipt!.transactionTime)).toBeLessThanOrEqual(Date.now());
  }, 120_000);

  it('oneExportUntilDelete → two exports in a row both succeed, because the first one DELETEs its job', async () => {
    const { clientId } = await env.sandbox.registerClient({
      jwks: { keys: [env.key.publicJwk] },
      faults: { oneExportUntilDelete: true },
    });
    const first = await runScenario(env, { name: 'oneExportUntilDelete', clientId });
    ran += 1;
    await assertZeroLoss(env, first, { outcome: 'succeeded' });

    const second = await runScenario(env, {
      name: 'oneExportUntilDelete',
      clientId,
      sourceId: first.sourceId,
    });
    ran += 1;
    await assertZeroLoss(env, second, { outcome: 'succeeded', since: first.result.receipt!.transactionTime });
    // No 429 "an export is already running": the first job was gone before the second kick-off.
    expect(await statuses(env, second, KICK_OFF)).toEqual([202, 202]);
    expect(second.result.receipt?.request.since).toBe(first.result.receipt?.transactionTime);
  }, 120_000);
});
