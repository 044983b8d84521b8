import { randomBytes } from 'node:crypto';
import {
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GetPublicKeyCommand,
  KMSServiceException,
  SignCommand,
} from '@aws-sdk/client-kms';
import {
  GetSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerServiceException,
} from '@aws-sdk/client-secrets-manager';
import { AssumeRoleCommand, STSServiceException } from '@aws-sdk/client-sts';
import type { CredentialProvider } from '../../lambdas/adapters/source-access-role.js';
import { KmsStandIn } from './kms-stand-in.js';

/**
 * One AWS account's worth of STS, Secrets Manager and KMS, enforcing the
 * source access role's attribute-based policy the way IAM would: AssumeRole
 * succeeds only for the role that trusts the caller and only with the
 * source tag; its credentials expire; a secret or signing key is usable only
 * with credentials whose session tag equals the resource's
 * `fhir-bulk-export-source` tag. The function's own role (no credentials
 * given) may only seal and open tokens (Encrypt, Decrypt), never sign or read
 * a secret. Errors are the SDK's exceptions with the names AWS gives them.
 */
const TAG = 'fhir-bulk-export-source';
const META = { httpStatusCode: 403, requestId: 'stand-in', attempts: 1, totalRetryDelay: 0 };

interface Session {
  readonly sourceTag: string;
  readonly expiration: Date;
}

export class AbacStandIn {
  readonly account = '111122223333';
  readonly roleArn = `arn:aws:iam::${this.account}:role/source-access`;
  readonly kms = new KmsStandIn();
  /** AssumeRole requests, as sent. */
  readonly assumeRoleCalls: Array<Record<string, unknown>> = [];
  /** Which session's credentials each secret read and signature used. */
  readonly uses: Array<{
    readonly action: string;
    readonly sourceTag: string;
    readonly accessKeyId: string;
  }> = [];
  private readonly sessions = new Map<string, Session>();
  private readonly secrets = new Map<string, { value: string; tag: string }>();
  private readonly keyTags = new Map<string, string>();

  constructor(private readonly now: () => Date) {}

  /** A secret tagged for a source; returns its ARN. */
  putSecret(name: string, value: unknown, sourceTag: string): string {
    const arn = `arn:aws:secretsmanager:us-east-1:${this.account}:secret:${name}-${randomBytes(3).toString('hex')}`;
    const entry = { value: JSON.stringify(value), tag: sourceTag };
    this.secrets.set(arn, entry);
    this.secrets.set(name, entry);
    return arn;
  }

  /** An ECC P-384 signing key tagged for a source; returns its ARN. */
  createSigningKey(sourceTag: string): string {
    const key = this.kms.createKey({ KeySpec: 'ECC_NIST_P384' });
    this.keyTags.set(key.Arn, sourceTag);
    this.keyTags.set(key.KeyId, sourceTag);
    return key.Arn;
  }

  /** The sealing key the function's own role uses. */
  createSealingKey(): string {
    return this.kms.createKey().Arn;
  }

  readonly sts = {
    send: async (command: AssumeRoleCommand) => {
      if (!(command instanceof AssumeRoleCommand)) throw new Error('STS stand-in implements AssumeRole only');
      const input = command.input;
      this.assumeRoleCalls.push({ ...input });
      const tag = input.Tags?.find((entry) => entry.Key === TAG)?.Value;
      // The trust policy: only this role, only with the source tag (sts:TagSession with aws:RequestTag).
      if (input.RoleArn !== this.roleArn || !tag) {
        throw new STSServiceException({
          name: 'AccessDenied',
          $fault: 'client',
          $metadata: META,
          message: `User: arn:aws:sts::${this.account}:assumed-role/mint-token/fn is not authorized to perform: sts:AssumeRole on resource: ${input.RoleArn}`,
        });
      }
      if (
        !input.RoleSessionName ||
        input.RoleSessionName.length > 64 ||
        !/^[\w+=,.@-]+$/.test(input.RoleSessionName)
      ) {
        throw new STSServiceException({
          name: 'ValidationError',
          $fault: 'client',
          $metadata: { ...META, httpStatusCode: 400 },
          message: 'RoleSessionName failed to satisfy constraint',
        });
      }
      const accessKeyId = `ASIA${randomBytes(8).toString('hex').toUpperCase()}`;
      const expiration = new Date(this.now().getTime() + (input.DurationSeconds ?? 3600) * 1000);
      this.sessions.set(accessKeyId, { sourceTag: tag, expiration });
      return {
        Credentials: {
          AccessKeyId: accessKeyId,
          SecretAccessKey: randomBytes(20).toString('base64'),
          SessionToken: randomBytes(32).toString('base64'),
          Expiration: expiration,
        },
        AssumedRoleUser: {
          AssumedRoleId: `AROA:${input.RoleSessionName}`,
          Arn: `arn:aws:sts::${this.account}:assumed-role/source-access/${input.RoleSessionName}`,
        },
        $metadata: { httpStatusCode: 200 },
      };
    },
  };

  secretsManagerFor(credentials: CredentialProvider) {
    return {
      send: async (command: unknown) => {
        if (!(command instanceof GetSecretValueCommand))
          throw new Error('Secrets Manager stand-in implements GetSecretValue only');
        const session = await this.session(credentials, 'secretsmanager:GetSecretValue');
        const secret = this.secrets.get(command.input.SecretId ?? '');
        if (!secret) {
          throw new ResourceNotFoundException({
            message: "Secrets Manager can't find the specified secret.",
            $metadata: META,
          });
        }
        if (secret.tag !== session.sourceTag) {
          throw new SecretsManagerServiceException({
            name: 'AccessDeniedException',
            $fault: 'client',
            $metadata: META,
            message: `not authorized to perform: secretsmanager:GetSecretValue on resource: ${command.input.SecretId} because no identity-based policy allows it`,
          });
        }
        return { SecretString: secret.value, $metadata: { httpStatusCode: 200 } };
      },
    };
  }

  kmsFor(credentials?: CredentialProvider) {
    return {
      send: async (command: unknown) => {
        const input = (command as { input: { KeyId?: string } }).input;
        if (command instanceof EncryptCommand || command instanceof DecryptCommand) {
          if (credentials) throw this.kmsDenied('Encrypt/Decrypt', input.KeyId);
          return this.kms.send(command);
        }
        if (
          command instanceof SignCommand ||
          command instanceof GetPublicKeyCommand ||
          command instanceof DescribeKeyCommand
        ) {
          const action = `kms:${command.constructor.name.replace(/Command$/, '')}`;
          if (!credentials) throw this.kmsDenied(action, input.KeyId);
          const session = await this.session(credentials, action);
          if (this.keyTags.get(input.KeyId ?? '') !== session.sourceTag)
            throw this.kmsDenied(action, input.KeyId);
          return this.kms.send(command);
        }
        throw new Error('KMS stand-in: unexpected command');
      },
    };
  }

  private async session(credentials: CredentialProvider, action: string): Promise<Session> {
    const { accessKeyId } = await credentials();
    const session = this.sessions.get(accessKeyId);
    if (!session) throw new Error(`stand-in: unknown access key ${accessKeyId}`);
    if (session.expiration.getTime() <= this.now().getTime()) {
      throw new SecretsManagerServiceException({
        name: 'ExpiredTokenException',
        $fault: 'client',
        $metadata: META,
        message: 'The security token included in the request is expired',
      });
    }
    this.uses.push({ action, sourceTag: session.sourceTag, accessKeyId });
    return session;
  }

  private kmsDenied(action: string, keyId: string | undefined) {
    return new KMSServiceException({
      name: 'AccessDeniedException',
      $fault: 'client',
      $metadata: META,
      message: `not authorized to perform: ${action} on resource: ${keyId} because no identity-based policy allows it`,
    });
  }
}
