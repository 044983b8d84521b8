/**
 * Runs the sandbox until SIGINT/SIGTERM:
 *   npm run sandbox -- --port 8080 [--patients 1000] [--seed 42] [--job-seconds 2] [--host 127.0.0.1]
 */
import '../local/node-version.js';
import { parseArgs } from 'node:util';
import { FAULT_NAMES, startSandbox } from './index.js';

const USAGE =
  'usage: npm run sandbox -- [--port N] [--second-port N] [--host H] [--patients N] [--seed N] [--job-seconds N] [--resources-per-file N]';

function integer(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) {
    process.stderr.write(`--${name}: expected an integer, got ${JSON.stringify(value)}\n${USAGE}\n`);
    process.exit(2);
  }
  return Number(value);
}

let values: Record<string, string | boolean | undefined>;
try {
  ({ values } = parseArgs({
    options: {
      port: { type: 'string' },
      'second-port': { type: 'string' },
      host: { type: 'string' },
      patients: { type: 'string' },
      seed: { type: 'string' },
      'job-seconds': { type: 'string' },
      'resources-per-file': { type: 'string' },
      help: { type: 'boolean' },
    },
    strict: true,
  }));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const jobSeconds = integer('job-seconds', values['job-seconds'] as string | undefined);
const sandbox = await startSandbox({
  port: integer('port', values.port as string | undefined),
  secondPort: integer('second-port', values['second-port'] as string | undefined),
  host: values.host as string | undefined,
  patientCount: integer('patients', values.patients as string | undefined),
  seed: integer('seed', values.seed as string | undefined),
  jobDurationMs: jobSeconds === undefined ? undefined : jobSeconds * 1000,
  resourcesPerFile: integer('resources-per-file', values['resources-per-file'] as string | undefined),
});

process.stdout.write(`FHIR base URL:  ${sandbox.baseUrl}
Token URL:      ${sandbox.tokenUrl}
Second origin:  ${sandbox.secondOrigin} (presigned file URLs)
Patients:       ${sandbox.dataset.options.patientCount} (seed ${sandbox.dataset.options.seed}); Groups: ${sandbox.dataset.groups.map((g) => g.id).join(', ')}

Register a client (public keys only; scope defaults to system/*.rs):
  curl -s -X POST ${sandbox.registrationUrl} -H 'content-type: application/json' \\
    -d '{"jwks_url":"https://example.org/jwks.json","scope":"system/*.rs","faults":{}}'
  (or "jwks": {"keys": [...]}; the answer is {"client_id": ...})

Inject faults per client ("faults" above) or per export with a base URL such as
  ${sandbox.origin}/fault/file5xx=1;status429=1/fhir
Fault names: ${FAULT_NAMES.join(', ')}
Ctrl-C stops the server.
`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await sandbox.close();
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
