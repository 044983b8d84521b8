/**
 * `npm run demo [-- --patients N]`: the whole pipeline on a laptop, no AWS
 * account. Starts the sandbox FHIR server and an embedded S3 server, makes a
 * signing key if there is none, registers it, exports a Group of synthetic
 * patients through the real state machine and handlers, and prints what
 * landed. Run it again and again: each run is a full export of a fresh cohort.
 */
import './local/node-version.js';
import { join, resolve } from 'node:path';
import { checkExportRequest, chunkOption, localExecutionName, summarize } from './local/cli.js';
import { integerOption, parseCommandLine, runCommand } from './local/command.js';
import { startEmbeddedS3 } from './local/embedded-s3.js';
import { runLocalExport } from './local/local-export.js';
import { ensureLocalKeyPair } from './local/local-keys.js';
import { describeValidation } from './local/local-validation.js';
import { describeLoad } from './local/local-warehouse.js';
import { createProgressPrinter, formatBytes } from './local/progress.js';
import { startSandbox } from './sandbox/index.js';

const BUCKET = 'bulk-export-demo';
const DEFAULT_PATIENTS = 1000;
/** The sandbox builds its whole dataset in memory before it serves it. */
const MAX_PATIENTS = 100_000;

const USAGE = `usage: npm run demo [-- --patients N] [--chunk patients:N|time:30d] [--no-validate] [--no-load]

  --patients N   synthetic patients in the exported Group (${DEFAULT_PATIENTS} by default, at most ${MAX_PATIENTS})
  --chunk C      export the Group as several server jobs: N patients each, or time windows (docs/chunking.md)
  --no-validate  skip the US Core validation of the export (docs/validation.md)
  --no-load      skip the warehouse load of the export (SQL on FHIR views as Parquet, docs/warehouse.md)
Its state (keys, the embedded S3's files, one log per run) is kept in .local/ of the folder
it runs in: the project folder under npm run.`;

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseCommandLine(argv, {
    patients: { type: 'string' },
    chunk: { type: 'string' },
    'no-validate': { type: 'boolean' },
    'no-load': { type: 'boolean' },
  });
  const patients =
    integerOption('patients', values.patients, { min: 1, max: MAX_PATIENTS }) ?? DEFAULT_PATIENTS;
  const chunk = values.chunk === undefined ? undefined : chunkOption(values.chunk);
  // Time windows need a start: the sandbox's history goes back five years.
  const window =
    chunk && chunk.by === 'time'
      ? { since: new Date(Date.now() - 5 * 365.25 * 86_400_000).toISOString() }
      : {};
  if (chunk !== undefined) checkExportRequest({ chunk, ...window });
  const started = Date.now();
  const localDir = resolve('.local');
  const sandbox = await startSandbox({ patientCount: patients });
  try {
    const s3 = await startEmbeddedS3({ directory: join(localDir, 's3') });
    try {
      await s3.createBucket(BUCKET);
      const key = await ensureLocalKeyPair(join(localDir, 'keys'));
      const { clientId } = await sandbox.registerClient({ jwks: { keys: [key.publicJwk] } });
      const executionName = localExecutionName('sandbox');
      const logFile = join(localDir, 'logs', `demo-${executionName}.ndjson`);
      process.stderr.write(
        `Sandbox FHIR server: ${sandbox.baseUrl} (${patients} patients)\nEmbedded S3: ${s3.endpoint} (files in ${join(localDir, 's3')})\nExecution ${executionName}; logs: ${logFile}\n`,
      );

      const source = {
        id: 'sandbox',
        fhirBaseUrl: sandbox.baseUrl,
        clientId,
        privateKeyFile: key.privateKeyFile,
        allowInsecureHttp: true,
        // POST: patient chunks travel as the patient parameter, which GET cannot carry.
        export: { level: 'group', groupId: 'cohort', ...(chunk ? { method: 'POST' } : {}) },
        maxConcurrency: 4,
      };
      const printer = createProgressPrinter();
      const { run, receipt, validation, load } = await runLocalExport({
        sources: [{ raw: source, origin: 'demo source' }],
        // A full export every time: each run's sandbox is a new server with a new cohort.
        input: { sourceId: 'sandbox', ...(chunk === undefined ? {} : { chunk, ...window }) },
        executionName,
        s3ClientConfig: s3.clientConfig,
        bucket: BUCKET,
        logFile,
        progress: (event) => printer.onProgress(event),
        onEvent: (event) => printer.onExecutionEvent(event),
        validate: !values['no-validate'],
        load: !values['no-load'],
      });
      printer.finish();
      if (run.status !== 'SUCCEEDED' || !receipt) {
        process.stderr.write(`\nExport FAILED: ${run.cause}\nLogs: ${logFile}\n`);
        return 1;
      }
      const output = run.output as { receiptKey: string; completionMarkerKey: string };
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(
        [
          '',
          `Export succeeded in ${seconds} s (execution ${run.executionName})`,
          '',
          summarize(receipt),
          `Data:    s3://${BUCKET}/${output.receiptKey.replace(/_receipt\.json$/, '')}`,
          `Receipt: s3://${BUCKET}/${output.receiptKey}`,
          `Marker:  s3://${BUCKET}/${output.completionMarkerKey}`,
          `On disk: ${join(localDir, 's3', BUCKET)} (${formatBytes(receipt.totals.bytes)} of NDJSON)`,
          `Logs:    ${logFile}`,
          '',
          ...(validation ? [describeValidation(validation, BUCKET), ''] : []),
          ...(load ? [describeLoad(load, BUCKET), ''] : []),
        ].join('\n'),
      );
      // A downstream stage that failed fails the demo: its marker is missing, and the query would read old tables.
      if (validation && validation.run.status !== 'SUCCEEDED') return 1;
      if (load && load.run.status !== 'SUCCEEDED') return 1;
      // The pipeline's last step, seen from the user's side: one query over the loaded tables.
      const { demoQueryReport } = await import('./local/warehouse-query.js');
      const cacheDirectory = join(localDir, 'warehouse');
      const report = await demoQueryReport(
        { s3ClientConfig: s3.clientConfig, bucket: BUCKET, cacheDirectory },
        load?.marker?.exportToken,
      );
      process.stdout.write(`${report}\n`);
      return 0;
    } finally {
      await s3.close();
    }
  } finally {
    await sandbox.close();
  }
}

runCommand('demo', USAGE, () => main(process.argv.slice(2)));
