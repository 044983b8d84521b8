import { EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { AccessTokenProvider } from './adapters/access-token-provider.js';
import { createFhirHttp } from './adapters/fhir-http.js';
import { createHttpAgent, type HttpTimeouts } from './adapters/http-agent.js';
import { createKmsSealer } from './adapters/kms-sealer.js';
import { createS3Store } from './adapters/s3-store.js';
import { createSecretReader } from './adapters/secrets.js';
import { createSourceAccessTokens } from './adapters/source-access-tokens.js';
import { parseSourceCatalog, requireEnv } from './config.js';
import { parseClientSecret } from './core/auth/client-config.js';
import { ConfigurationError, StorageError } from './errors.js';
import { type AwsObservability, createAwsObservability } from './observability/aws-observability.js';
import type { EventSink, Runtime } from './runtime.js';

/**
 * The Runtime of a Lambda container, built once from its environment:
 *
 * - `EXPORT_BUCKET`: the bucket; `EXPORT_PREFIX` (optional) its key prefix
 * - `DATA_KMS_KEY_ID` (optional): SSE-KMS key for objects we write
 * - `SOURCES`: JSON array of source settings (no secrets)
 * - `SEALING_KMS_KEY_ID`: symmetric key that seals tokens in state
 * - `EVENT_BUS_NAME` (optional, default `default`)
 * - `SOURCE_SECRET_ARNS` (token minter only): JSON `{ "<sourceId>": "<secret ARN>" }`
 * - `LOG_LEVEL`, `POWERTOOLS_*`: see createAwsObservability
 *
 * `options.httpTimeouts` shortens the HTTP timeouts (tests); the defaults are http-agent.ts's.
 * `options.observability`: the container's, shared with the middy stack (aws-entry.ts).
 */
export function createAwsRuntime(
  env: NodeJS.ProcessEnv = process.env,
  options: { readonly httpTimeouts?: Partial<HttpTimeouts>; readonly observability?: AwsObservability } = {},
): Runtime {
  const bucket = requireEnv(env, 'EXPORT_BUCKET', 'the export bucket name');
  const sources = parseSourceCatalog(env.SOURCES);
  const sealingKeyId = requireEnv(env, 'SEALING_KMS_KEY_ID', 'the symmetric KMS key that seals tokens');
  const { logger, metrics, traced } = options.observability ?? createAwsObservability(env);
  const s3 = traced(new S3Client({}));
  const kms = traced(new KMSClient({}));
  const events = traced(new EventBridgeClient({}));
  const eventBus = env.EVENT_BUS_NAME ?? 'default';
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
  const secretArns = env.SOURCE_SECRET_ARNS ? parseSecretArns(env.SOURCE_SECRET_ARNS) : undefined;
  const secrets = secretArns
    ? createSecretReader({ client: traced(new SecretsManagerClient({})) })
    : undefined;
  const providers = new Map<string, Promise<AccessTokenProvider>>();

  return {
    now: () => new Date(),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    random: Math.random,
    logger,
    metrics,
    s3,
    store: createS3Store({ s3, bucket, ...(env.DATA_KMS_KEY_ID ? { kmsKeyId: env.DATA_KMS_KEY_ID } : {}) }),
    prefix: env.EXPORT_PREFIX ?? '',
    ...(env.DATA_KMS_KEY_ID ? { sseKmsKeyId: env.DATA_KMS_KEY_ID } : {}),
    sources,
    sealer: createKmsSealer({ kms, keyId: sealingKeyId }),
    fhir: createFhirHttp({ dispatcher: http }),
    fileDispatcher: http,
    events: eventSink,
    ...(secretArns && secrets
      ? {
          accessTokens: (sourceId: string) => {
            let provider = providers.get(sourceId);
            if (!provider) {
              const arn = secretArns[sourceId];
              const settings = sources.get(sourceId);
              if (!arn || !settings)
                throw new ConfigurationError(`SOURCE_SECRET_ARNS has no secret for source ${sourceId}`);
              provider = secrets
                .getSecretString(arn)
                .then((secret) =>
                  parseClientSecret(secret, {
                    path: `secret of source ${sourceId}`,
                    allowInsecureHttp: false,
                  }),
                )
                .then((auth) => createSourceAccessTokens(auth, settings, { kms, logger }));
              providers.set(sourceId, provider);
              provider.catch(() => providers.delete(sourceId));
            }
            return provider;
          },
        }
      : {}),
  };
}

function parseSecretArns(raw: string): Record<string, string> {
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed))
      return parsed as Record<string, string>;
  } catch {
    // fall through to the error below
  }
  throw new ConfigurationError(
    'environment variable SOURCE_SECRET_ARNS must be a JSON object of sourceId → secret ARN',
  );
}
