/**
 * `npm run keys -- <command>`: the keys an EHR needs to know us by.
 *
 *   generate --alg ES384|RS384 [--bits 2048|3072|4096] --out <dir>
 *       Writes <dir>/<kid>.private.jwk.json (owner-only) and prints the public JWKS.
 *   jwks --private <file>... [--kms <keyId>... [--region <region>]]
 *       Prints the public JWKS of local private JWK files and/or KMS keys
 *       (several keys: publish the next key before it signs, keep the old one
 *       until EHRs stop caching it).
 *   jwks --source <source file>
 *       The same for a source file's keys: privateKeyFile (or kmsKeyId) and,
 *       during a rotation, nextPrivateKeyFile and previousPrivateKeyFile.
 *
 * The JWKS goes to stdout so it can be piped or redirected; everything else
 * goes to stderr. Private key material is never printed. Relative paths are
 * read from the folder the command is run from.
 */
import './local/node-version.js';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { KMSClient } from '@aws-sdk/client-kms';
import { getKmsPublicJwk, type KmsClientLike } from '../lambdas/adapters/kms-public-keys.js';
import { createLocalSigner, createLocalSignerFromJwk } from '../lambdas/adapters/local-signer.js';
import { parseLocalSourceAuth } from '../lambdas/core/auth/client-config.js';
import { buildJwks, jwkThumbprint, type PublishedJwk } from '../lambdas/core/auth/jwk.js';
import { callerDirectory, HelpRequested, parseCommandLine, runCommand, UsageError } from './local/command.js';

export const USAGE = `Usage:
  npm run keys -- generate --alg ES384|RS384 [--bits 2048|3072|4096] --out <dir>
  npm run keys -- jwks --private <file>...
  npm run keys -- jwks --kms <keyId>... [--region <region>]
  npm run keys -- jwks --source <source file>
  (--private and --kms may be combined by repeating each flag per key)`;

export interface KeysIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** @default a KMSClient for the region (or the SDK's default region) */
  readonly kmsClient?: (region: string | undefined) => KmsClientLike;
  /** Relative paths resolve against this folder. @default the folder the command was run from */
  readonly cwd?: string;
}

const RSA_BITS = ['2048', '3072', '4096'];

async function generate(args: string[], io: KeysIo): Promise<void> {
  const { values, positionals } = parseCommandLine(
    args,
    { alg: { type: 'string' }, bits: { type: 'string' }, out: { type: 'string' } },
    { allowPositionals: true },
  );
  if (positionals.length > 0)
    throw new UsageError(`generate takes no positional arguments (got ${positionals.join(' ')})`);
  const alg = values.alg;
  if (alg !== 'ES384' && alg !== 'RS384') throw new UsageError('generate needs --alg ES384 or --alg RS384');
  if (!values.out) throw new UsageError('generate needs --out <dir>');
  if (values.bits !== undefined && (alg !== 'RS384' || !RSA_BITS.includes(values.bits))) {
    throw new UsageError(`--bits applies to RS384 only and must be one of ${RSA_BITS.join(', ')}`);
  }
  const { file, publicJwk } = await writeLocalKeyPair(
    resolve(io.cwd ?? callerDirectory(), values.out),
    alg,
    values.bits ? Number(values.bits) : undefined,
  );
  io.stderr(`Wrote ${file} (keep it secret; register the public JWKS below with the EHR)\n`);
  io.stdout(`${JSON.stringify(buildJwks([publicJwk]), null, 2)}\n`);
}

/** Generates a signing key, proves it signs, and writes it as `<dir>/<kid>.private.jwk.json` (owner-only). */
export async function writeLocalKeyPair(dir: string, alg: 'ES384' | 'RS384', rsaBits = 2048) {
  const { privateKey } =
    alg === 'ES384'
      ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
      : generateKeyPairSync('rsa', { modulusLength: rsaBits });
  const jwk = privateKey.export({ format: 'jwk' });
  const kid = jwkThumbprint(jwk);
  const privateJwk = { ...jwk, kid, alg, use: 'sig' };
  // Proves the file will load and sign before anyone registers its public half.
  const signer = createLocalSignerFromJwk(privateJwk);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, `${kid}.private.jwk.json`);
  // `wx`: never overwrite a key file; a lost private key cannot be recovered.
  await writeFile(file, `${JSON.stringify(privateJwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return { file, publicJwk: signer.publicJwk };
}

async function jwks(args: string[], io: KeysIo): Promise<void> {
  const { values, positionals } = parseCommandLine(
    args,
    {
      private: { type: 'string', multiple: true },
      kms: { type: 'string', multiple: true },
      region: { type: 'string' },
      source: { type: 'string' },
    },
    { allowPositionals: true },
  );
  const privateFiles = [...(values.private ?? [])];
  const kmsKeyIds = [...(values.kms ?? [])];
  if (values.source !== undefined) {
    if (privateFiles.length > 0 || kmsKeyIds.length > 0 || positionals.length > 0)
      throw new UsageError('--source names the keys itself; give it alone');
    const keys = await sourceKeys(resolve(io.cwd ?? callerDirectory(), values.source));
    privateFiles.push(...keys.privateFiles);
    kmsKeyIds.push(...keys.kmsKeyIds);
  }
  if (positionals.length > 0) {
    // `--private a.json b.json`: extra values belong to the one list flag given.
    if (privateFiles.length > 0 && kmsKeyIds.length > 0) {
      throw new UsageError('with both --private and --kms, repeat the flag before each value');
    }
    if (privateFiles.length > 0) privateFiles.push(...positionals);
    else if (kmsKeyIds.length > 0) kmsKeyIds.push(...positionals);
    else throw new UsageError(`unexpected argument ${positionals[0]}`);
  }
  if (privateFiles.length === 0 && kmsKeyIds.length === 0)
    throw new UsageError('jwks needs --private <file> or --kms <keyId>');
  if (values.region !== undefined && kmsKeyIds.length === 0)
    throw new UsageError('--region applies to --kms only');

  const keys: PublishedJwk[] = [];
  const cwd = io.cwd ?? callerDirectory();
  for (const file of privateFiles) keys.push((await createLocalSigner(resolve(cwd, file))).publicJwk);
  if (kmsKeyIds.length > 0) {
    const kms = io.kmsClient
      ? io.kmsClient(values.region)
      : new KMSClient(values.region ? { region: values.region } : {});
    for (const keyId of kmsKeyIds) keys.push(await getKmsPublicJwk(kms, keyId));
  }
  io.stdout(`${JSON.stringify(buildJwks(keys), null, 2)}\n`);
}

/**
 * Every key a source file lists, current first: during a rotation the JWKS must hold the next
 * key before it signs and the previous one until EHR caches have let it go.
 */
async function sourceKeys(file: string): Promise<{ privateFiles: string[]; kmsKeyIds: string[] }> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new UsageError(
      `--source ${file} cannot be read as JSON (${(error as Error).message.slice(0, 120)})`,
    );
  }
  const auth = parseLocalSourceAuth(raw, { path: file, baseDir: dirname(file) });
  if (auth.authMethod !== 'private_key_jwt')
    throw new UsageError(`--source ${file} has auth ${auth.authMethod}: it signs nothing, so it has no JWKS`);
  const current = auth.signingKey;
  return {
    privateFiles: [...(current.kind === 'jwk-file' ? [current.path] : []), ...auth.publishedOnlyKeyFiles],
    kmsKeyIds: current.kind === 'kms' ? [current.keyId] : [],
  };
}

/** Runs the CLI; returns the process exit code. */
export async function main(argv: string[], io: KeysIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === 'generate') await generate(rest, io);
    else if (command === 'jwks') await jwks(rest, io);
    else if (command === undefined) throw new UsageError('give a command: generate or jwks');
    else if (command === 'help' || command === '--help' || command === '-h') throw new HelpRequested();
    else throw new UsageError(`unknown command ${command}`);
    return 0;
  } catch (error) {
    if (error instanceof HelpRequested) {
      io.stdout(`${USAGE}\n`);
      return 0;
    }
    const usage = error instanceof UsageError;
    io.stderr(`keys: ${(error as Error).message}\n${usage ? `${USAGE}\n` : ''}`);
    return usage ? 2 : 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  runCommand('keys', USAGE, () =>
    main(process.argv.slice(2), {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
    }),
  );
}
