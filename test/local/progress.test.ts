import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedS3, startEmbeddedS3 } from '../../scripts/local/embedded-s3.js';
import { runLocalExport } from '../../scripts/local/local-export.js';
import { ensureLocalKeyPair, type LocalKeyPair } from '../../scripts/local/local-keys.js';
import { createProgressPrinter, formatSeconds } from '../../scripts/local/progress.js';
import type { EventLog } from '../../scripts/local/runner.js';
import { type Sandbox, startSandbox } from '../../scripts/sandbox/index.js';

/** A stream that keeps what was written; `isTTY` chooses between plain lines and the redrawn status line. */
function captureStream(isTTY = false) {
  const chunks: string[] = [];
  return {
    chunks,
    text: () => chunks.join(''),
    stream: {
      isTTY,
      columns: 200,
      write: (chunk: string | Uint8Array) => {
        chunks.push(String(chunk));
        return true;
      },
    },
  };
}

/** A frozen clock, moved by hand. */
function clock(start = 1_000_000) {
  let at = start;
  return { now: () => at, advance: (ms: number) => (at += ms) };
}

const entered = (name: string, type: string, input: unknown, index?: number): EventLog => ({
  type: 'StateEntered',
  timestamp: 0,
  state: { name, type, input },
  ...(index === undefined ? {} : { index }),
});
const failed = (name: string, error: string, index?: number): EventLog => ({
  type: 'StateFailed',
  timestamp: 0,
  state: { name, type: 'Task', input: {} },
  Error: error,
  Cause: 'secret cause text',
  ...(index === undefined ? {} : { index }),
});

const definition = {
  StartAt: 'Wait For Export',
  States: {
    'Wait For Export': { Type: 'Wait', SecondsPath: '$.poll.waitSeconds', Next: 'Poll' },
    'Fixed Pause': { Type: 'Wait', Seconds: 90, Next: 'Poll' },
    Poll: {
      Type: 'Task',
      Resource: 'arn:aws:lambda:local:000000000000:function:Poll',
      Retry: [
        { ErrorEquals: ['TransientServerError'], IntervalSeconds: 2, BackoffRate: 3, MaxAttempts: 2 },
        { ErrorEquals: ['States.TaskFailed'], IntervalSeconds: 1, MaxAttempts: 1 },
      ],
      End: true,
    },
    Files: {
      Type: 'Map',
      ItemProcessor: {
        StartAt: 'Download',
        States: {
          Download: {
            Type: 'Task',
            Resource: 'arn:aws:lambda:local:000000000000:function:Download',
            Retry: [
              {
                ErrorEquals: ['TransientServerError'],
                IntervalSeconds: 4,
                BackoffRate: 2,
                MaxAttempts: 5,
                MaxDelaySeconds: 6,
                JitterStrategy: 'FULL',
              },
            ],
            End: true,
          },
        },
      },
      End: true,
    },
  },
};

describe('progress printer', () => {
  it('prints each Wait state with its length, read from the state input, and the reason the input gives', () => {
    const out = captureStream();
    const time = clock();
    const printer = createProgressPrinter({ stream: out.stream, now: time.now, definition });

    time.advance(3_000);
    printer.onExecutionEvent(
      entered('Wait For Export', 'Wait', { poll: { waitSeconds: 300, reason: 'status answered 429' } }),
    );
    time.advance(300_000);
    printer.onExecutionEvent(
      entered('Wait For Export', 'Wait', {
        poll: { waitSeconds: 150, consecutiveTransientErrors: 2, forceTokenRefresh: false },
      }),
    );
    printer.onExecutionEvent(
      entered('Wait For Export', 'Wait', { poll: { waitSeconds: 2, progress: '40%' } }),
    );
    printer.onExecutionEvent(entered('Fixed Pause', 'Wait', {}));
    printer.finish();

    expect(out.text().split('\n')).toStrictEqual([
      '[00:03] Wait For Export: waiting 5 min (status answered 429)',
      '[05:03] Wait For Export: waiting 2 min 30 s (2 failed status requests in a row)',
      '[05:03] Wait For Export: waiting 2 s (server progress: 40%)',
      '[05:03] Fixed Pause: waiting 1 min 30 s',
      '',
    ]);
  });

  it('announces each Task retry with its attempt and interval, per Map iteration, and a failure past the last retry', () => {
    const out = captureStream();
    const printer = createProgressPrinter({ stream: out.stream, now: clock().now, definition });

    printer.onExecutionEvent(entered('Poll', 'Task', {}));
    printer.onExecutionEvent(failed('Poll', 'TransientServerError'));
    printer.onExecutionEvent(failed('Poll', 'TransientServerError'));
    printer.onExecutionEvent(failed('Poll', 'TransientServerError'));
    printer.onExecutionEvent(entered('Poll', 'Task', {}));
    printer.onExecutionEvent(failed('Poll', 'StorageError'));
    printer.onExecutionEvent(failed('Poll', 'States.Timeout'));
    printer.onExecutionEvent(entered('Download', 'Task', {}, 0));
    printer.onExecutionEvent(entered('Download', 'Task', {}, 1));
    printer.onExecutionEvent(failed('Download', 'TransientServerError', 0));
    printer.onExecutionEvent(failed('Download', 'TransientServerError', 0));
    printer.onExecutionEvent(failed('Download', 'TransientServerError', 1));
    printer.onExecutionEvent({
      type: 'StateRetried',
      timestamp: 0,
      state: { name: 'Download', type: 'Task' },
    });

    const text = out.text();
    expect(text.split('\n')).toStrictEqual([
      '[00:00] Poll failed: TransientServerError; retry 1 of 2 in 2 s',
      '[00:00] Poll failed: TransientServerError; retry 2 of 2 in 6 s',
      '[00:00] Poll failed: TransientServerError',
      '[00:00] Poll failed: StorageError; retry 1 of 1 in 1 s',
      '[00:00] Poll failed: States.Timeout',
      '[00:00] Download failed: TransientServerError; retry 1 of 5 in up to 4 s',
      '[00:00] Download failed: TransientServerError; retry 2 of 5 in up to 6 s',
      '[00:00] Download failed: TransientServerError; retry 1 of 5 in up to 4 s',
      '[00:00] retrying Download',
      '',
    ]);
    expect(text).not.toContain('secret cause text');
  });

  it('counts files and resources from progress events', () => {
    const out = captureStream();
    const printer = createProgressPrinter({ stream: out.stream, now: clock().now, definition });

    printer.onProgress({
      kind: 'phase',
      phase: 'manifest received',
      detail: '2 files (2 data, 0 error, 0 deleted)',
    });
    printer.onProgress({ kind: 'file-done', index: 0, type: 'Patient', lines: 1200, bytes: 2048 } as never);
    printer.onProgress({ kind: 'file-done', index: 1, type: 'Observation', lines: 3, bytes: 100 } as never);

    expect(out.text().split('\n')).toStrictEqual([
      '[00:00] manifest received: 2 files (2 data, 0 error, 0 deleted)',
      '[00:00] file 1/2 landed: Patient, 1,200 lines, 2.0 KiB',
      '[00:00] file 2/2 landed: Observation, 3 lines, 100 B',
      '',
    ]);
  });

  it('on a terminal, keeps the wait on the redrawn status line and clears it at the end', () => {
    const out = captureStream(true);
    const time = clock();
    const printer = createProgressPrinter({ stream: out.stream, now: time.now, definition });

    time.advance(61_000);
    printer.onExecutionEvent(entered('Wait For Export', 'Wait', { poll: { waitSeconds: 120 } }));
    printer.finish();

    expect(out.chunks).toStrictEqual([
      '\r\x1b[2K[01:01] Wait For Export: waiting 2 min\n',
      '\r\x1b[2K[01:01] waiting 2 min (Wait For Export)',
      '\r\x1b[2K',
    ]);
  });

  it.each([
    [0.5, '0.5 s'],
    [59, '59 s'],
    [60, '1 min'],
    [300, '5 min'],
    [3725, '62 min 5 s'],
  ])('formats %d seconds as %s', (seconds, text) => {
    expect(formatSeconds(seconds)).toBe(text);
  });
});

describe('progress printer on a real run', () => {
  let sandbox: Sandbox;
  let s3: EmbeddedS3;
  let key: LocalKeyPair;
  let keyDir: string;
  beforeAll(async () => {
    sandbox = await startSandbox({ patientCount: 10, jobDurationMs: 300 });
    s3 = await startEmbeddedS3();
    await s3.createBucket('progress');
    keyDir = await mkdtemp(join(tmpdir(), 'progress-keys-'));
    key = await ensureLocalKeyPair(keyDir);
  }, 60_000);
  afterAll(async () => {
    await s3?.close();
    await sandbox?.close();
    await rm(keyDir, { recursive: true, force: true });
  });

  it('shows the kick-off back-off and the status waits of the real state machine, each with its length', async () => {
    const { clientId } = await sandbox.registerClient({
      jwks: { keys: [key.publicJwk] },
      faults: { kickoff429: 1, statusTransient: 1 },
    });
    const out = captureStream();
    const printer = createProgressPrinter({ stream: out.stream });

    const { run } = await runLocalExport({
      sources: [
        {
          raw: {
            id: 'progress',
            fhirBaseUrl: sandbox.baseUrl,
            clientId,
            privateKeyFile: key.privateKeyFile,
            allowInsecureHttp: true,
            export: { level: 'group', groupId: 'cohort' },
          },
        },
      ],
      input: { sourceId: 'progress' },
      s3ClientConfig: s3.clientConfig,
      bucket: 'progress',
      waitOverrideMs: 20,
      progress: (event) => printer.onProgress(event),
      onEvent: (event) => printer.onExecutionEvent(event),
    });
    printer.finish();

    expect(run.status).toBe('SUCCEEDED');
    const lines = out.text().split('\n');
    // The ASL's own Wait states, by name, with the seconds the handlers chose (not the shortened test waits).
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^\[\d\d:\d\d\] Wait Before Retrying Kick-Off: waiting \d+ s \(kick-off answered 429: .+\)$/,
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        /^\[\d\d:\d\d\] Wait For Export: waiting \d+ s \(1 failed status request in a row\)$/,
      ),
    );
    expect(
      lines.filter((line) => / Wait For Export: waiting \d+ s/.test(line)).length,
    ).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
