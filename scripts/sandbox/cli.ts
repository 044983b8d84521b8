/**
 * Runs the sandbox until SIGINT/SIGTERM:
 *   npm run sandbox -- --port 8080 [--patients 1000] [--seed 42] [--job-seconds 2] [--host 127.0.0.1]
 */
import '../local/node-version.js';
import { integerOption, parseCommandLine, parseOrExit, UsageError, usageMessage } from '../local/command.js';
import { EHR_MODE_NAMES, EHR_MODES, isEhrMode } from './ehr-modes.js';
import { FAULT_NAMES, startSandbox } from './index.js';
import { SandboxOptionsError } from './options.js';

const USAGE = `usage: npm run sandbox -- [--port N] [--second-port N] [--host H] [--patients N] [--seed N] [--job-seconds N] [--resources-per-file N] [--ehr MODE]

  --ehr MODE   every client meets that EHR's behaviour unless it registers with an "ehr" of its own:
${EHR_MODE_NAMES.map((name) => `                 ${name}: ${EHR_MODES[name].summary}`).join('\n')}`;

const options = parseOrExit('sandbox', USAGE, () => {
  const { values } = parseCommandLine(process.argv.slice(2), {
    port: { type: 'string' },
    'second-port': { type: 'string' },
    host: { type: 'string' },
    patients: { type: 'string' },
    seed: { type: 'string' },
    'job-seconds': { type: 'string' },
    'resources-per-file': { type: 'string' },
    ehr: { type: 'string' },
  });
  if (values.ehr !== undefined && !isEhrMode(values.ehr))
    throw new UsageError(
      `--ehr must be one of ${EHR_MODE_NAMES.join(', ')} (got ${JSON.stringify(values.ehr)})`,
    );
  const jobSeconds = integerOption('job-seconds', values['job-seconds'], { min: 0 });
  return {
    port: integerOption('port', values.port, { min: 0, max: 65535 }),
    secondPort: integerOption('second-port', values['second-port'], { min: 0, max: 65535 }),
    host: values.host,
    patientCount: integerOption('patients', values.patients),
    seed: integerOption('seed', values.seed, { min: Number.MIN_SAFE_INTEGER }),
    jobDurationMs: jobSeconds === undefined ? undefined : jobSeconds * 1000,
    resourcesPerFile: integerOption('resources-per-file', values['resources-per-file']),
    ehr: values.ehr,
  };
});

const sandbox = await startSandbox(options).catch((error: Error) => {
  const usage = error instanceof SandboxOptionsError;
  process.stderr.write(
    usage ? usageMessage('sandbox', error) : `sandbox failed: ${error.name}: ${error.message}\n`,
  );
  process.exit(usage ? 2 : 1);
});

process.stdout.write(`FHIR base URL:  ${sandbox.baseUrl}
Token URL:      ${sandbox.tokenUrl}
Second origin:  ${sandbox.secondOrigin} (presigned file URLs)
Patients:       ${sandbox.dataset.options.patientCount} (seed ${sandbox.dataset.options.seed}); Groups: ${sandbox.dataset.groups.map((g) => g.id).join(', ')}

EHR mode:       ${options.ehr ?? 'none (the IG as written)'}

Register a client (public keys only; scope defaults to system/*.rs; "ehr": "epic" for that EHR's behaviour):
  curl -s -X POST ${sandbox.registrationUrl} -H 'content-type: application/json' \\
    -d '{"jwks_url":"https://example.org/jwks.json","scope":"system/*.rs","faults":{}}'
  (or "jwks": {"keys": [...]}; the answer is {"client_id": ...})
${options.ehr === 'cms-bcda' ? '  A client that authenticates like CMS BCDA registers "client_secret": "<8+ characters>" instead of keys\n  and asks for tokens with HTTP Basic.\n' : ''}
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
