import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createLocalSigner } from '../../lambdas/adapters/local-signer.js';
import type { PublishedJwk } from '../../lambdas/core/auth/jwk.js';
import { writeLocalKeyPair } from '../keys.js';

export interface LocalKeyPair {
  readonly privateKeyFile: string;
  readonly publicJwk: PublishedJwk;
}

/** The demo's signing key: the first one in `dir`, or a new ES384 key written there. */
export async function ensureLocalKeyPair(dir: string): Promise<LocalKeyPair> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const existing = (await readdir(dir)).filter((name) => name.endsWith('.private.jwk.json')).sort();
  if (existing[0]) {
    const privateKeyFile = join(dir, existing[0]);
    return { privateKeyFile, publicJwk: (await createLocalSigner(privateKeyFile)).publicJwk };
  }
  const { file, publicJwk } = await writeLocalKeyPair(dir, 'ES384');
  return { privateKeyFile: file, publicJwk };
}
