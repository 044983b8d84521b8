/**
 * `npm run export -- --source <file.json> [--bucket B] [--s3-endpoint URL]
 *   [--prefix P] [--since ISO|auto] [--until ISO] [--types A,B] [--group ID]`
 *
 * Runs the real state machine locally against any FHIR server (see
 * scripts/local/cli.ts for where the data lands). Exits 0 only when every
 * file landed and was verified.
 */
import './local/node-version.js';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openS3Target, readSourceFile, summarize } from './local/cli.js';
import { runLocalExport } from './local/local-export.js';
import { createProgressPrinter } from './local/progress.js';

const USAGE = `usage: npm run export -- --source <file.json> [--bucket B] [--s3-endpoint URL] [--prefix P]
                         [--since ISO|auto] [--until ISO] [--types A,B] [--group ID]`;

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      source: { type: 'string' },
      bucket: { type: 'string' },
      's3-endpoint': { type: 'string' },
      prefix: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      types: { type: 'string' },
      group: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help || !values.source) {
    process.stderr.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const source = await readSourceFile(values.source);
  const input: Record<string, unknown> = { sourceId: source.id, since: values.since ?? 'auto' };
  if (values.until) input.until = values.until;
  if (values.types)
    input.types = values.types
      .split(',')
      .map((type) => type.trim())
      .filter(Boolean);
  if (values.group) input.groupId = values.group;

  const target = await openS3Target({
    ...(values.bucket ? { bucket: values.bucket } : {}),
    ...(values['s3-endpoint'] ? { s3Endpoint: values['s3-endpoint'] } : {}),
  });
  process.stderr.write(`Exporting source ${source.id} into ${target.description}\n`);
  const logFile = resolve('.local', 'logs', `export-${source.id}.ndjson`);
  const printer = createProgressPrinter();
  try {
    const { run, receipt } = await runLocalExport({
      sources: [source],
      input,
      s3ClientConfig: target.s3ClientConfig,
      bucket: target.bucket,
      ...(values.prefix ? { prefix: values.prefix } : {}),
      logFile,
      progress: (event) => printer.onProgress(event),
      onEvent: (event) => printer.onExecutionEvent(event),
    });
    printer.finish();
    if (run.status !== 'SUCCEEDED' || !receipt) {
      process.stderr.write(`Export FAILED: ${run.cause}\nLogs: ${logFile}\n`);
      return 1;
    }
    const output = run.output as { receiptKey: string; completionMarkerKey: string };
    process.stdout.write(
      `\n${summarize(receipt)}\n\nReceipt: s3://${target.bucket}/${output.receiptKey}\nMarker:  s3://${target.bucket}/${output.completionMarkerKey}\nLogs:    ${logFile}\n`,
    );
    return 0;
  } finally {
    await target.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    process.stderr.write(`export failed: ${error.message}\n`);
    process.exitCode = 1;
  },
);
