import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { STSClient } from '@aws-sdk/client-sts';
import type { AccessTokenProvider } from './adapters/access-token-provider.js';
import { createFhirHttp } from './adapters/fhir-http.js';
import { createHttpAgent, type HttpTimeouts } from './adapters/http-agent.js';
import type { KmsClientLike } from './adapters/kms-public-keys.js';
import { createKmsSealer } from './adapters/kms-sealer.js';
import { createS3Store } from './adapters/s3-store.js';
import { createSecretReader, type SecretsClientLike } from './adapters/secrets.js';
import {
  type CredentialProvider,
  createSourceRoleCredentials,
  type StsClientLike,
} from './adapters/source-access-role.js';
import { createSourceAccessTokens } from './adapters/source-access-tokens.js';
import { createSourceRegistry, DEFAULT_SOURCE_CACHE_SECONDS } from './adapters/source-registry.js';
import { requireEnv } from './config.js';
import { parseClientSecret } from './core/auth/client-config.js';
import { AWS_HISTORY_EVENT_LIMIT } from './core/history-budget.js';
import { MAX_MAX_LINE_BYTES, MIN_MAX_LINE_BYTES } from './core/ndjson/line-limit.js';
import { ConfigurationError, StorageError } from './errors.js';
import { type AwsObservability, createAwsObservability } from './observability/aws-observability.js';
import type { AccessTokenSource, EventSink, Runtime } from './runtime.js';

/**
 * The Runtime of a Lambda container, built once from its environment:
 *
 * - `EXPORT_BUCKET`: the bucket; `EXPORT_PREFIX` (optional) its key prefix
 * - `DATA_KMS_KEY_ID` (optional): SSE-KMS key for objects we write
 * - `SOURCE_CACHE_SECONDS` (optional, default 60): how long a source's registration is reused
 * - `SEALING_KMS_KEY_ID`: symmetric key that seals tokens in state
 * - `EVENT_BUS_NAME` (optional, default `default`)
 * - `SOURCE_ACCESS_ROLE_ARN` (token minter only): the role assumed per source, with the
 *   source's session tag, to read its client secret and sign with its key
 * - `MAX_LINE_BYTES` (Download File only): the longest line its memory is sized for
 * - `LOG_LEVEL`, `POWERTOOLS_*`: see createAwsObservability
 *
 * Sources are not in the environment: they are read from the registry in the bucket.
 * `options.httpTimeouts` shortens the HTTP timeouts (tests); the defaults are http-agent.ts's.
 * `options.observability`: the container's, shared with the middy stack (aws-entry.ts).
 * `options.clients` replaces AWS clients that cannot run in a test (STS, Secrets Manager, KMS).
 */
export function createAwsRuntime(
  env: NodeJS.ProcessEnv = process.env,
  options: {
    readonly httpTimeouts?: Partial<HttpTimeouts>;
    readonly clients?: Partial<AwsClients>;
    readonly now?: () => Date;
    readonly observability?: AwsObservability;
  } = {},
): Runtime {
  const bucket = requireEnv(env, 'EXPORT_BUCKET', 'the export bucket name');
  const sealingKeyId = requireEnv(env, 'SEALING_KMS_KEY_ID', 'the symmetric KMS key that seals tokens');
  const cacheSeconds = optionalIntegerEnv(env, 'SOURCE_CACHE_SECONDS', 0, 86_400);
  const maxLineBytes = optionalIntegerEnv(env, 'MAX_LINE_BYTES', MIN_MAX_LINE_BYTES, MAX_MAX_LINE_BYTES);
  // Below AWS's 25,000-event limit, always: the continuation must still fit after the budget.
  const historyEventBudget = optionalIntegerEnv(
    env,
    'HISTORY_EVENT_BUDGET',
    100,
    AWS_HISTORY_EVENT_LIMIT - 1_000,
  );
  const now = options.now ?? (() => new Date());
  const clients: AwsClients = { ...defaultClients(), ...options.clients };
  const { logger, metrics, traced } = options.observability ?? createAwsObservability(env);
  const s3 = traced(clients.s3());
  const events = traced(new EventBridgeClient({}));
  const eventBus = env.EVENT_BUS_NAME ?? 'default';
  const prefix = env.EXPORT_PREFIX ?? '';
  const store = createS3Store({
    s3,
    bucket,
    ...(env.DATA_KMS_KEY_ID ? { kmsKeyId: env.DATA_KMS_KEY_ID } : {}),
  });
  const sources = createSourceRegistry({
    store,
    prefix,
    cacheSeconds: cacheSeconds ?? DEFAULT_SOURCE_CACHE_SECONDS,
    now,
  });
  // One keep-alive pool per container, for the FHIR API and the files alike.
  const http = createHttpAgent(options.httpTimeouts);
  const eventSink: EventSink = {
    async emit(detailType, detail) {
      const response = await events.send(
        new PutEventsCommand({
          Entries: [
            {
              Source: 'fhir.bulk-export',
              DetailType: detailType,
              Detail: JSON.stringify(detail),
              EventBusName: eventBus,
            },
          ],
        }),
      );
      if ((response.FailedEntryCount ?? 0) > 0) {
        throw new StorageError(
          `EventBridge refused the ${detailType} event: ${response.Entries?.[0]?.ErrorCode ?? 'unknown'}`,
        );
      }
    },
  };

  const sourceAccessRole = env.SOURCE_ACCESS_ROLE_ARN;
  let accessTokens: ((sourceId: string) => Promise<AccessTokenSource>) | undefined;
  if (sourceAccessRole !== undefined && sourceAccessRole.trim() !== '') {
    const credentialsOf = createSourceRoleCredentials({
      sts: traced(clients.sts()),
      roleArn: sourceAccessRole,
      now,
    });
    const providers = new Map<
      string,
      {
        readonly registered: string;
        readonly provider: Promise<AccessTokenProvider>;
        readonly createdAt: number;
      }
    >();
    accessTokens = async (sourceId) => {
      const registration = await sources.registration(sourceId);
      // Kept while the registration is the same: its token cache spares the EHR's token endpoint.
      // Made again after an hour: its KMS signer resolved the key alias once, and a key rotation
      // moves the alias (docs/deploy.md); a changed client secret is picked up the same way.
      const registered = JSON.stringify(registration);
      const held = providers.get(sourceId);
      if (held?.registered === registered && now().getTime() - held.createdAt < PROVIDER_MAX_AGE_MS)
        return held.provider;
      // Only the source's own session reads its secret and signs with its key.
      const credentials = credentialsOf(sourceId);
      const secrets = createSecretReader({ client: traced(clients.secretsManager(credentials)), now });
      const kms = traced(clients.kms(credentials));
      // The session first: STS refusing the role is said as such, not as an unreadable secret.
      const provider = credentials()
        .then(() => secrets.getSecretString(registration.clientSecret))
        .then((secret) =>
          parseClientSecret(secret, {
            path: `secret of source ${sourceId}`,
            allowInsecureHttp: false,
            authMethod: registration.settings.auth,
          }),
        )
        .then((auth) => createSourceAccessTokens(auth, registration.settings, { kms, logger }));
      providers.set(sourceId, { registered, provider, createdAt: now().getTime() });
      provider.catch(() => {
        if (providers.get(sourceId)?.provider === provider) providers.delete(sourceId);
      });
      return provider;
    };
  }

  return {
    now,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    random: Math.random,
    logger,
    metrics,
    s3,
    store,
    prefix,
    ...(env.DATA_KMS_KEY_ID ? { sseKmsKeyId: env.DATA_KMS_KEY_ID } : {}),
    sources,
    sealer: createKmsSealer({ kms: traced(clients.kms()), keyId: sealingKeyId }),
    fhir: createFhirHttp({ dispatcher: http }),
    fileDispatcher: http,
    events: eventSink,
    ...(maxLineBytes === undefined ? {} : { maxLineBytes }),
    ...(historyEventBudget === undefined ? {} : { historyEventBudget }),
    ...(accessTokens ? { accessTokens } : {}),
  };
}

/** How long a container reuses a source's token provider (its signer and its secret). */
const PROVIDER_MAX_AGE_MS = 60 * 60 * 1000;

/** The AWS clients the runtime makes; `credentials` absent means the function's own role. */
export interface AwsClients {
  readonly s3: () => S3Client;
  readonly sts: () => StsClientLike;
  readonly secretsManager: (credentials: CredentialProvider) => SecretsClientLike;
  readonly kms: (credentials?: CredentialProvider) => KmsClientLike;
}

function defaultClients(): AwsClients {
  return {
    s3: () => new S3Client({}),
    sts: () => new STSClient({}),
    secretsManager: (credentials) => new SecretsManagerClient({ credentials }),
    kms: (credentials) => new KMSClient(credentials ? { credentials } : {}),
  };
}

function optionalIntegerEnv(
  env: NodeJS.ProcessEnv,
  name: string,
  min: number,
  max: number,
): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigurationError(
      `environment variable ${name} must be an integer from ${min} to ${max}, got "${raw.slice(0, 40)}"`,
    );
  }
  return value;
}
