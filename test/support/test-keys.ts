import { generateKeyPairSync } from 'node:crypto';
import { jwkThumbprint } from '../../lambdas/core/auth/jwk.js';

export type TestAlg = 'ES384' | 'RS384';

/** A fresh private JWK as `npm run keys -- generate` writes it: kid = RFC 7638 thumbprint. */
export function generatePrivateJwk(alg: TestAlg): Record<string, string> {
  const { privateKey } =
    alg === 'ES384'
      ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' }) as Record<string, string>;
  return { ...jwk, kid: jwkThumbprint(jwk), alg, use: 'sig' };
}
