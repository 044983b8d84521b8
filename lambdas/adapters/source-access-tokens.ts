import type { SourceSettings } from '../config.js';
import type { AuthClientConfig } from '../core/auth/client-config.js';
import { buildScope } from '../core/auth/scopes.js';
import { ConfigurationError } from '../errors.js';
import type { Logger } from '../logger.js';
import { type AccessTokenProvider, createAccessTokenProvider } from './access-token-provider.js';
import type { KmsClientLike } from './kms-public-keys.js';
import { createKmsSigner } from './kms-signer.js';
import { createLocalSigner, createLocalSignerFromJwk } from './local-signer.js';

export interface SourceAccessTokenDependencies {
  /** Needed when the source signs with KMS. */
  readonly kms?: KmsClientLike;
  readonly logger?: Logger;
  /** The clock of assertions and token expiry (a simulated one in the week-long bench). */
  readonly now?: () => Date;
}

/** One source's token provider: its signer (KMS or JWK), its scope, its token endpoint. */
export async function createSourceAccessTokens(
  auth: AuthClientConfig,
  settings: SourceSettings,
  dependencies: SourceAccessTokenDependencies = {},
): Promise<AccessTokenProvider> {
  let signer: Awaited<ReturnType<typeof createKmsSigner>> | Awaited<ReturnType<typeof createLocalSigner>>;
  switch (auth.signingKey.kind) {
    case 'kms':
      if (!dependencies.kms)
        throw new ConfigurationError(`source ${settings.id} signs with KMS but no KMS client is configured`);
      signer = await createKmsSigner({ kms: dependencies.kms, keyId: auth.signingKey.keyId });
      break;
    case 'jwk':
      signer = createLocalSignerFromJwk(auth.signingKey.privateJwk);
      break;
    case 'jwk-file':
      signer = await createLocalSigner(auth.signingKey.path);
      break;
  }
  const scope = buildScope({
    resourceTypes: settings.export.types,
    syntax: auth.scopeSyntax ?? settings.scopeSyntax,
    casing: settings.scopeCasing,
    ...(auth.scope === undefined ? {} : { override: auth.scope }),
    extraScopes: [...settings.extraScopes, ...(auth.extraScopes ?? [])],
  });
  return createAccessTokenProvider({
    signer,
    clientId: auth.clientId,
    scope,
    fhirBaseUrl: settings.fhirBaseUrl,
    ...(auth.tokenUrl === undefined ? {} : { tokenUrl: auth.tokenUrl }),
    allowInsecureHttp: settings.allowInsecureHttp,
    defaultExpiresInSeconds: settings.tokenLifetimeSeconds,
    ...(dependencies.logger ? { logger: dependencies.logger } : {}),
    ...(dependencies.now ? { now: dependencies.now } : {}),
  });
}
