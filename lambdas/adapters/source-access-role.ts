import { AssumeRoleCommand, type AssumeRoleCommandOutput } from '@aws-sdk/client-sts';
import { ConfigurationError, TransientServerError } from '../errors.js';

/**
 * Per-source isolation (ABAC): the token minter reads a source's client
 * secret and signs with its key only as the source access role, assumed with
 * a session tag naming the source. The role's policy allows a secret or key
 * only when its tag `fhir-bulk-export-source` equals the session's, so the
 * credentials of one source cannot read another's secret or sign with its
 * key, and no policy grows with the number of sources.
 */
export const SOURCE_TAG_KEY = 'fhir-bulk-export-source';

/** What an SDK client's `credentials` option takes (CredentialProvider). */
export interface AssumedCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration: Date;
}
export type CredentialProvider = () => Promise<AssumedCredentials>;

/** The part of `STSClient` we use; a real client fits, and so does a test stand-in. */
export interface StsClientLike {
  send(command: AssumeRoleCommand): Promise<AssumeRoleCommandOutput>;
}

export interface SourceRoleCredentialsOptions {
  readonly sts: StsClientLike;
  /** `SOURCE_ACCESS_ROLE_ARN`. */
  readonly roleArn: string;
  /** The shortest session STS grants; a chained role allows at most an hour anyway. @default 900 */
  readonly durationSeconds?: number;
  /** Credentials this close to expiry are replaced before use. @default 300 */
  readonly refreshBeforeSeconds?: number;
  /** @default () => new Date() */
  readonly now?: () => Date;
}

/** Refusals that retrying cannot fix: the role does not trust us, or the tag is not allowed. */
const CONFIGURATION_FAILURES = new Set([
  'AccessDenied',
  'AccessDeniedException',
  'MalformedPolicyDocument',
  'PackedPolicyTooLarge',
  'RegionDisabledException',
  'ValidationError',
  'InvalidClientTokenId',
]);

/**
 * A credential provider per source, for the SDK clients that act for it
 * (`new SecretsManagerClient({ credentials })`). Each keeps its session and
 * assumes the role again shortly before the session expires; concurrent
 * callers share one AssumeRole.
 */
export function createSourceRoleCredentials(
  options: SourceRoleCredentialsOptions,
): (sourceId: string) => CredentialProvider {
  const { sts, roleArn } = options;
  const durationSeconds = options.durationSeconds ?? 900;
  const refreshBeforeMs = (options.refreshBeforeSeconds ?? 300) * 1000;
  const now = options.now ?? (() => new Date());
  const providers = new Map<string, CredentialProvider>();

  const assume = async (sourceId: string): Promise<AssumedCredentials> => {
    let output: AssumeRoleCommandOutput;
    try {
      output = await sts.send(
        new AssumeRoleCommand({
          RoleArn: roleArn,
          RoleSessionName: `mint-${sourceId}`.slice(0, 64),
          DurationSeconds: durationSeconds,
          Tags: [{ Key: SOURCE_TAG_KEY, Value: sourceId }],
        }),
      );
    } catch (error) {
      const name = error instanceof Error ? error.name : 'Error';
      const what = `cannot assume the source access role ${roleArn} for source ${sourceId}`;
      if (CONFIGURATION_FAILURES.has(name))
        throw new ConfigurationError(`${what}: ${name}`, { cause: error });
      throw new TransientServerError(`${what} right now: ${name}`, undefined, { cause: error });
    }
    const credentials = output.Credentials;
    if (!credentials?.AccessKeyId || !credentials.SecretAccessKey || !credentials.Expiration) {
      throw new TransientServerError(`STS answered AssumeRole of ${roleArn} without credentials`);
    }
    return {
      accessKeyId: credentials.AccessKeyId,
      secretAccessKey: credentials.SecretAccessKey,
      ...(credentials.SessionToken ? { sessionToken: credentials.SessionToken } : {}),
      expiration: credentials.Expiration,
    };
  };

  const providerFor = (sourceId: string): CredentialProvider => {
    let session: AssumedCredentials | undefined;
    let assuming: Promise<AssumedCredentials> | undefined;
    return () => {
      if (session && session.expiration.getTime() - now().getTime() > refreshBeforeMs) {
        return Promise.resolve(session);
      }
      // Whoever finds the session expiring starts the one AssumeRole that concurrent callers wait for.
      assuming ??= assume(sourceId)
        .then((assumed) => {
          session = assumed;
          return assumed;
        })
        .finally(() => {
          assuming = undefined;
        });
      return assuming;
    };
  };

  return (sourceId) => {
    let provider = providers.get(sourceId);
    if (!provider) {
      provider = providerFor(sourceId);
      providers.set(sourceId, provider);
    }
    return provider;
  };
}
