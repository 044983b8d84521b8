import type { SourceSettings } from '../config.js';
import type { ClientAssertionSigner } from '../core/auth/client-assertion.js';
import type { AuthClientConfig, SigningKeySource } from '../core/auth/client-config.js';
import { buildScope } from '../core/auth/scopes.js';
import { ConfigurationError } from '../errors.js';
import type { Logger } from '../logger.js';
import { type AccessTokenProvider, createAccessTokenProvider } from './access-token-provider.js';
import { readClientSecret } from './client-secret.js';
import type { KmsClientLike } from './kms-public-keys.js';
import { createKmsSigner } from './kms-signer.js';
import { createLocalSigner, createLocalSignerFromJwk } from './local-signer.js';

export interface SourceAccessTokenDependencies {
  /** Needed when the source signs with KMS. */
  readonly kms?: KmsClientLike;
  readonly logger?: Logger;
  /** The clock of assertions and token expiry (a simulated one in the week-long bench). */
  readonly now?: () => Date;
  /** Where a `clientSecretEnv` is looked up. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

/** One source's token provider: its credential (a KMS or JWK signer, or a client secret), its scope, its token endpoint. */
export async function createSourceAccessTokens(
  auth: AuthClientConfig,
  settings: SourceSettings,
  dependencies: SourceAccessTokenDependencies = {},
): Promise<AccessTokenProvider> {
  if (auth.authMethod !== settings.auth) {
    // The mode is a setting, the credential is in the secret: both must say the same.
    throw new ConfigurationError(
      `source ${settings.id} has auth ${settings.auth} but its credentials are for ${auth.authMethod}`,
    );
  }
  const credential =
    auth.authMethod === 'client_secret_basic'
      ? {
          basicAuthSecret: await readClientSecret(auth.clientSecret, {
            sourceId: settings.id,
            ...(dependencies.env ? { env: dependencies.env } : {}),
          }),
        }
      : { signer: await signerOf(auth.signingKey, settings.id, dependencies) };
  const scope = buildScope({
    resourceTypes: settings.export.types,
    syntax: auth.scopeSyntax ?? settings.scopeSyntax,
    casing: settings.scopeCasing,
    ...(auth.scope === undefined ? {} : { override: auth.scope }),
    extraScopes: [...settings.extraScopes, ...(auth.extraScopes ?? [])],
  });
  return createAccessTokenProvider({
    ...credential,
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

async function signerOf(
  signingKey: SigningKeySource,
  sourceId: string,
  dependencies: SourceAccessTokenDependencies,
): Promise<ClientAssertionSigner> {
  switch (signingKey.kind) {
    case 'kms':
      if (!dependencies.kms)
        throw new ConfigurationError(`source ${sourceId} signs with KMS but no KMS client is configured`);
      return createKmsSigner({ kms: dependencies.kms, keyId: signingKey.keyId });
    case 'jwk':
      return createLocalSignerFromJwk(signingKey.privateJwk);
    case 'jwk-file':
      return createLocalSigner(signingKey.path);
  }
}
