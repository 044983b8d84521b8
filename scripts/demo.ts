/**
 * `npm run demo`: the whole pipeline on a laptop, no AWS account. Starts the
 * sandbox FHIR server and an embedded S3 server, makes a signing key if there
 * is none, registers it, exports a Group of ~1,000 synthetic patients through
 * the real state machine and handlers, and prints what landed.
 */
import './local/node-version.js';
import { join, resolve } from 'node:path';
import { startEmbeddedS3 } from './local/embedded-s3.js';
import { runLocalExport } from './local/local-export.js';
import { ensureLocalKeyPair } from './local/local-keys.js';
import { createProgressPrinter, formatBytes, renderSummaryTable } from './local/progress.js';
import { startSandbox } from './sandbox/index.js';

const LOCAL_DIR = resolve('.local');
const BUCKET = 'bulk-export-demo';

async function main() {
  const started = Date.now();
  const patients = Number(process.env.DEMO_PATIENTS ?? 1000);
  const sandbox = await startSandbox({ patientCount: patients });
  const s3 = await startEmbeddedS3({ directory: join(LOCAL_DIR, 's3') });
  try {
    await s3.createBucket(BUCKET);
    const key = await ensureLocalKeyPair(join(LOCAL_DIR, 'keys'));
    const { clientId } = await sandbox.registerClient({ jwks: { keys: [key.publicJwk] } });
    process.stderr.write(
      `Sandbox FHIR server: ${sandbox.baseUrl}\nEmbedded S3: ${s3.endpoint} (files in ${join(LOCAL_DIR, 's3')})\n`,
    );

    const source = {
      id: 'sandbox',
      fhirBaseUrl: sandbox.baseUrl,
      clientId,
      privateKeyFile: key.privateKeyFile,
      allowInsecureHttp: true,
      export: { level: 'group', groupId: 'cohort' },
      maxConcurrency: 4,
    };
    const printer = createProgressPrinter();
    const { run, receipt } = await runLocalExport({
      sources: [{ raw: source, origin: 'demo source' }],
      // A full export every time, so a second demo run shows the same cohort rather than an empty delta.
      input: { sourceId: 'sandbox' },
      s3ClientConfig: s3.clientConfig,
      bucket: BUCKET,
      logFile: join(LOCAL_DIR, 'logs', 'demo.ndjson'),
      progress: (event) => printer.onProgress(event),
      onEvent: (event) => printer.onExecutionEvent(event),
    });
    printer.finish();
    if (run.status !== 'SUCCEEDED' || !receipt) {
      process.stderr.write(
        `\nExport FAILED: ${run.cause}\nLogs: ${join(LOCAL_DIR, 'logs', 'demo.ndjson')}\n`,
      );
      process.exitCode = 1;
      return;
    }
    const output = run.output as { receiptKey: string; completionMarkerKey: string };
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const rows = Object.entries(receipt.byType).map(([type, totals]) => ({ type, ...totals }));
    process.stdout.write(
      [
        '',
        `Export succeeded in ${seconds} s (execution ${run.executionName})`,
        '',
        renderSummaryTable(rows),
        '',
        `Error files: ${receipt.errors.files} (${receipt.errors.lines} OperationOutcomes); deleted files: ${receipt.deleted.files}`,
        `transactionTime (next _since): ${receipt.transactionTime}`,
        `Data:    s3://${BUCKET}/${output.receiptKey.replace(/_receipt\.json$/, '')}`,
        `Receipt: s3://${BUCKET}/${output.receiptKey}`,
        `Marker:  s3://${BUCKET}/${output.completionMarkerKey}`,
        `On disk: ${join(LOCAL_DIR, 's3', BUCKET)} (${formatBytes(receipt.totals.bytes)} of NDJSON)`,
        '',
      ].join('\n'),
    );
  } finally {
    await s3.close();
    await sandbox.close();
  }
}

main().catch((error: Error) => {
  process.stderr.write(`demo failed: ${error.name}: ${error.message}\n`);
  process.exitCode = 1;
});
