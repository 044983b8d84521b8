import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jwkThumbprint } from '../../../lambdas/core/auth/jwk.js';
import { main } from '../../../scripts/keys.js';
import { KmsStandIn } from '../../support/kms-stand-in.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'keys-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function capture(kms?: KmsStandIn) {
  const out: string[] = [];
  const err: string[] = [];
  const regions: Array<string | undefined> = [];
  return {
    out,
    err,
    regions,
    io: {
      stdout: (text: string) => out.push(text),
      stderr: (text: string) => err.push(text),
      ...(kms
        ? {
            kmsClient: (region: string | undefined) => {
              regions.push(region);
              return kms;
            },
          }
        : {}),
    },
  };
}

describe('npm run keys', () => {
  it.each(['ES384', 'RS384'] as const)(
    'generate --alg %s writes an owner-only private JWK named by its kid and prints the public JWKS',
    async (alg) => {
      const { io, out, err } = capture();
      expect(await main(['generate', '--alg', alg, '--out', join(dir, 'keys')], io)).toBe(0);
      const [file] = await readdir(join(dir, 'keys'));
      const privateJwk = JSON.parse(await readFile(join(dir, 'keys', file!), 'utf8'));
      expect(file).toBe(`${privateJwk.kid}.private.jwk.json`);
      expect(privateJwk).toMatchObject({
        kid: jwkThumbprint(privateJwk),
        alg,
        use: 'sig',
        d: expect.any(String),
      });
      expect((await stat(join(dir, 'keys', file!))).mode & 0o777).toBe(0o600);
      const jwks = JSON.parse(out.join(''));
      expect(jwks.keys).toHaveLength(1);
      expect(jwks.keys[0]).toMatchObject({ kid: privateJwk.kid, alg, use: 'sig' });
      expect(out.join('')).not.toContain(privateJwk.d);
      expect(err.join('')).toContain(file);
    },
  );

  it('jwks --private prints several local keys, never their private members', async () => {
    const { io } = capture();
    await main(['generate', '--alg', 'ES384', '--out', dir], io);
    await main(['generate', '--alg', 'RS384', '--out', dir], io);
    const files = (await readdir(dir)).map((name) => join(dir, name));
    const { io: io2, out } = capture();
    expect(await main(['jwks', '--private', ...files], io2)).toBe(0);
    const jwks = JSON.parse(out.join(''));
    expect(jwks.keys.map((key: { alg: string }) => key.alg).sort()).toStrictEqual(['ES384', 'RS384']);
    expect(out.join('')).not.toMatch(/"(d|p|q|dp|dq|qi)"/);
  });

  it('jwks --source publishes a source file’s current, next and previous keys during a rotation', async () => {
    const { io } = capture();
    for (const _ of [1, 2, 3]) await main(['generate', '--alg', 'ES384', '--out', join(dir, 'keys')], io);
    const [current, next, previous] = await readdir(join(dir, 'keys'));
    const source = {
      id: 'epic',
      fhirBaseUrl: 'https://fhir.example.org/r4',
      clientId: 'c1',
      privateKeyFile: `keys/${current}`,
      nextPrivateKeyFile: `keys/${next}`,
      previousPrivateKeyFile: `keys/${previous}`,
    };
    await writeFile(join(dir, 'epic.json'), JSON.stringify(source));
    const { io: io2, out } = capture();
    // Relative to the source file's folder, wherever the command runs.
    expect(await main(['jwks', '--source', join(dir, 'epic.json')], { ...io2, cwd: tmpdir() })).toBe(0);
    const kids = (JSON.parse(out.join('')) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
    expect(kids).toStrictEqual(
      [current, next, previous].map((file) => file!.replace('.private.jwk.json', '')),
    );
  });

  it('jwks --source refuses a client_secret_basic source, which has no keys', async () => {
    await writeFile(
      join(dir, 'bcda.json'),
      JSON.stringify({
        id: 'bcda',
        fhirBaseUrl: 'https://sandbox.bcda.cms.gov/api/v2',
        clientId: 'c1',
        auth: 'client_secret_basic',
        clientSecretEnv: 'BCDA_CLIENT_SECRET',
      }),
    );
    const { io, err } = capture();
    expect(await main(['jwks', '--source', join(dir, 'bcda.json')], io)).toBe(2);
    expect(err.join('')).toContain('has auth client_secret_basic: it signs nothing, so it has no JWKS');
  });

  it('jwks --kms prints the KMS public keys for a region', async () => {
    const kms = new KmsStandIn({ region: 'eu-west-1' });
    const a = kms.createKey({ KeySpec: 'ECC_NIST_P384', KeyUsage: 'SIGN_VERIFY' });
    const b = kms.createKey({ KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    const { io, out, regions } = capture(kms);
    expect(await main(['jwks', '--kms', a.KeyId, b.Arn, '--region', 'eu-west-1'], io)).toBe(0);
    expect(JSON.parse(out.join('')).keys.map((key: { alg: string }) => key.alg)).toStrictEqual([
      'ES384',
      'RS384',
    ]);
    expect(regions).toStrictEqual(['eu-west-1']);
  });

  it.each([
    [[], 2, 'Usage:'],
    [['rotate'], 2, 'keys: unknown command rotate'],
    [['generate', '--out', 'x'], 2, 'keys: generate needs --alg ES384 or --alg RS384'],
    [['generate', '--alg', 'ES384'], 2, 'keys: generate needs --out <dir>'],
    [
      ['generate', '--alg', 'ES384', '--bits', '2048', '--out', 'x'],
      2,
      'keys: --bits applies to RS384 only and must be one of 2048, 3072, 4096',
    ],
    [['generate', '--alg', 'ES384', '--outdir', 'x'], 2, "keys: Unknown option '--outdir'"],
    [['jwks'], 2, 'keys: jwks needs --private <file> or --kms <keyId>'],
    [
      ['jwks', '--private', 'a', 'b', '--kms', 'k', 'c'],
      2,
      'keys: with both --private and --kms, repeat the flag before each value',
    ],
    [
      ['jwks', '--private', '/nonexistent/key.json'],
      1,
      'keys: private key file /nonexistent/key.json cannot be read (ENOENT)',
    ],
  ])('%j exits %i with a clear message', async (argv, code, message) => {
    const { io, err } = capture();
    expect(await main(argv, io)).toBe(code);
    expect(err.join('')).toContain(message);
  });
});
