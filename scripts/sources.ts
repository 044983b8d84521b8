/**
 * `npm run sources -- put <file.json> | list | show <id> | remove <id> --bucket B [--prefix P]
 *  [--kms-key-id K] [--endpoint URL]` (see USAGE)
 *
 * Manages the source registry in the export bucket: the objects the Lambdas
 * read a source's settings from. Adding or changing a source is a `put`, no
 * deployment; the functions see it within SOURCE_CACHE_SECONDS.
 */
import './local/node-version.js';
import { readFile } from 'node:fs/promises';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { createS3Store, type JsonStore } from '../lambdas/adapters/s3-store.js';
import { parseRegisteredSource } from '../lambdas/config.js';
import { registrationKey, registryPrefix } from '../lambdas/core/layout.js';
import { PipelineError } from '../lambdas/errors.js';
import { isSourceId } from '../lambdas/schema/source.js';
import { parseCommandLine, resolveFromCaller, runCommand, UsageError } from './local/command.js';
import { embeddedS3ClientConfig } from './local/embedded-s3.js';

const USAGE = `usage: npm run sources -- <command> --bucket B [--prefix P] [--kms-key-id K] [--endpoint URL]

  The source registry in the export bucket (<prefix>_registry/sources/<id>.json): the Lambdas read a
  source's settings from it, so adding or changing a source needs no deployment (the functions see it
  within SOURCE_CACHE_SECONDS, 60 s by default). Its credentials stay in its Secrets Manager secret.

  put <file.json>  validate a registration and write it: { "id", "clientSecret": secret name or ARN,
                   "settings": { "fhirBaseUrl", "export", ... } } (no credentials in settings)
  list             the registered source ids and their FHIR base URLs
  show <id>        one registration, as stored
  remove <id>      remove a registration (its secret, key, schedule and data stay)

  --bucket B          the export bucket (required)
  --prefix P          the pipeline's key prefix (EXPORT_PREFIX), if it has one
  --kms-key-id K      SSE-KMS key to write with (the pipeline's data key; required when the bucket's policy asks for it)
  --endpoint URL      an S3-compatible endpoint (e.g. the embedded S3) instead of AWS S3
  Credentials and region come from the AWS SDK's defaults.`;

const OPTIONS = {
  bucket: { type: 'string' },
  prefix: { type: 'string' },
  'kms-key-id': { type: 'string' },
  endpoint: { type: 'string' },
} as const;

async function main(argv: readonly string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, OPTIONS, { allowPositionals: true });
  const [command, argument, ...extra] = positionals;
  if (!command) throw new UsageError('a command is required: put, list, show or remove');
  if (extra.length > 0) throw new UsageError(`unexpected argument(s) ${extra.join(' ')}`);
  const needs = { put: 'a file', list: undefined, show: 'a source id', remove: 'a source id' } as const;
  if (!(command in needs)) {
    throw new UsageError(`unknown command ${JSON.stringify(command)}: expected put, list, show or remove`);
  }
  const argumentName = needs[command as keyof typeof needs];
  if (argumentName && argument === undefined) throw new UsageError(`${command} needs ${argumentName}`);
  if (!argumentName && argument !== undefined) throw new UsageError(`${command} takes no argument`);
  if ((command === 'show' || command === 'remove') && !isSourceId(argument)) {
    throw new UsageError(
      `${command}: ${JSON.stringify(String(argument).slice(0, 64))} is not a source id (1-63 lower-case letters, digits or dashes)`,
    );
  }
  if (!values.bucket) throw new UsageError('--bucket B is required: the export bucket');
  // Checked before anything is read or sent: a mistake in the file is said without credentials.
  const registration = command === 'put' ? await readRegistration(argument!) : undefined;

  const s3 = new S3Client(clientConfig(values.endpoint));
  const store = createS3Store({
    s3,
    bucket: values.bucket,
    ...(values['kms-key-id'] ? { kmsKeyId: values['kms-key-id'] } : {}),
  });
  const prefix = values.prefix ?? '';
  const where = (id: string) => `s3://${values.bucket}/${registrationKey(prefix, id)}`;
  try {
    switch (command) {
      case 'put': {
        const { id, record } = registration!;
        const before = await store.getJson<unknown>(registrationKey(prefix, id));
        if (JSON.stringify(before) === JSON.stringify(record)) {
          process.stdout.write(
            `Source ${id} is registered as given already (${where(id)}); nothing changed.\n`,
          );
          return 0;
        }
        await store.putJson(registrationKey(prefix, id), record);
        process.stdout.write(
          `${before === undefined ? 'Registered' : 'Updated'} source ${id} at ${where(id)}; the functions read it within SOURCE_CACHE_SECONDS.\n`,
        );
        return 0;
      }
      case 'list':
        return await list(store, prefix);
      case 'show': {
        const record = await store.getJson<unknown>(registrationKey(prefix, argument!));
        if (record === undefined) {
          process.stderr.write(`No source ${argument} is registered: ${where(argument!)} does not exist.\n`);
          return 1;
        }
        process.stdout.write(`${JSON.stringify(record, null, 2)}\n`);
        return 0;
      }
      default: {
        const key = registrationKey(prefix, argument!);
        if ((await store.head(key)) === undefined) {
          process.stdout.write(
            `No source ${argument} is registered (${where(argument!)}); nothing removed.\n`,
          );
          return 0;
        }
        await store.delete(key);
        process.stdout.write(
          `Removed source ${argument} (${where(argument!)}). Its secret, signing key, schedule and exported data are unchanged.\n`,
        );
        return 0;
      }
    }
  } finally {
    s3.destroy();
  }
}

/** The file, parsed and validated: an invalid registration is never written. */
async function readRegistration(file: string): Promise<{ id: string; record: unknown }> {
  const path = resolveFromCaller(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(
      `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new RegistrationError(`${file} is not valid JSON: ${(error as Error).message}`);
  }
  try {
    return { id: parseRegisteredSource(raw, 'registration').id, record: raw };
  } catch (error) {
    if (error instanceof PipelineError) throw new RegistrationError(`${file}: ${error.message}`);
    throw error;
  }
}

/** A registration file that does not validate: named for what is wrong, exit 1. */
class RegistrationError extends Error {
  override readonly name = 'InvalidRegistration';
}

async function list(store: JsonStore, prefix: string): Promise<number> {
  const keys = (await store.listKeys(registryPrefix(prefix))).filter((key) => key.endsWith('.json'));
  let invalid = 0;
  for (const key of keys) {
    const id = key.slice(registryPrefix(prefix).length, -'.json'.length);
    try {
      const registered = parseRegisteredSource(await store.getJson<unknown>(key), id);
      process.stdout.write(`${id}\t${registered.settings.fhirBaseUrl}\n`);
    } catch (error) {
      invalid += 1;
      process.stdout.write(`${id}\tINVALID: ${(error as Error).message}\n`);
    }
  }
  if (keys.length === 0)
    process.stderr.write(`No sources are registered under s3://${store.bucket}/${registryPrefix(prefix)}\n`);
  return invalid > 0 ? 1 : 0;
}

function clientConfig(endpoint: string | undefined): S3ClientConfig {
  if (endpoint === undefined) return {};
  try {
    new URL(endpoint);
  } catch {
    throw new UsageError(
      `--endpoint must be a URL such as http://127.0.0.1:4568 (got ${JSON.stringify(endpoint)})`,
    );
  }
  // Path-style addressing and the checksum settings an S3-compatible server needs; credentials from the environment.
  const { credentials: _credentials, ...config } = embeddedS3ClientConfig(endpoint);
  return { ...config, region: process.env.AWS_REGION ?? config.region };
}

runCommand('sources', USAGE, () => main(process.argv.slice(2)));
