import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';

export interface LocalKeyPair {
  readonly privateKeyFile: string;
  readonly publicJwk: JWK;
}

/**
 * The demo's signing key: reused from `dir` when one exists, else generated
 * (ES384) and written with owner-only permissions. The kid is the RFC 7638
 * thumbprint, as for KMS keys.
 */
export async function ensureLocalKeyPair(dir: string): Promise<LocalKeyPair> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing = (await readdir(dir)).filter((name) => name.endsWith('.private.jwk.json')).sort();
  if (existing[0]) {
    const privateKeyFile = join(dir, existing[0]);
    const jwk = JSON.parse(await readFile(privateKeyFile, 'utf8')) as JWK;
    return { privateKeyFile, publicJwk: publicPart(jwk) };
  }
  const { privateKey } = await generateKeyPair('ES384', { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  const privateJwk = { ...jwk, kid, alg: 'ES384', use: 'sig' };
  const privateKeyFile = join(dir, `${kid}.private.jwk.json`);
  await writeFile(privateKeyFile, `${JSON.stringify(privateJwk, null, 2)}\n`, { mode: 0o600 });
  return { privateKeyFile, publicJwk: publicPart(privateJwk) };
}

function publicPart(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = jwk;
  return publicJwk;
}
