import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createS3Store } from '../../../lambdas/adapters/s3-store.js';
import { createSourceRoleCredentials } from '../../../lambdas/adapters/source-access-role.js';
import { registrationKey } from '../../../lambdas/core/layout.js';
import { ConfigurationError } from '../../../lambdas/errors.js';
import { createMintTokenHandler } from '../../../lambdas/handlers/mint-token.js';
import { sealContext } from '../../../lambdas/runtime.js';
import { createAwsRuntime } from '../../../lambdas/runtime-aws.js';
import { type EmbeddedS3, startEmbeddedS3 } from '../../../scripts/local/embedded-s3.js';
import { AbacStandIn } from '../../support/abac-stand-in.js';
import { startTokenServer, type TokenServer } from '../../support/token-server.js';

const BUCKET = 'exports';
const START = new Date('2026-05-04T03:00:00Z');

describe('source access role credentials', () => {
  it('assume the role once per source with its session tag and a session name cut to 64 characters', async () => {
    // Prepare
    const aws = new AbacStandIn(() => START);
    const credentialsOf = createSourceRoleCredentials({
      sts: aws.sts,
      roleArn: aws.roleArn,
      now: () => START,
    });
    const longId = `a${'-b'.repeat(31)}`;
    // Act
    const [first, second] = await Promise.all([credentialsOf('epic')(), credentialsOf('epic')()]);
    await credentialsOf(longId)();
    // Assess: the two concurrent callers shared one session; each source has its own.
    expect(first).toBe(second);
    expect(aws.assumeRoleCalls).toEqual([
      {
        RoleArn: aws.roleArn,
        RoleSessionName: 'mint-epic',
        DurationSeconds: 900,
        Tags: [{ Key: 'fhir-bulk-export-source', Value: 'epic' }],
      },
      {
        RoleArn: aws.roleArn,
        RoleSessionName: `mint-${longId}`.slice(0, 64),
        DurationSeconds: 900,
        Tags: [{ Key: 'fhir-bulk-export-source', Value: longId }],
      },
    ]);
  });

  it('assume the role again five minutes before the session expires, not before', async () => {
    // Prepare
    let clock = START;
    const aws = new AbacStandIn(() => clock);
    const credentials = createSourceRoleCredentials({ sts: aws.sts, roleArn: aws.roleArn, now: () => clock })(
      'epic',
    );
    const first = await credentials();
    // Act
    clock = new Date(START.getTime() + 599_000);
    const stillFirst = await credentials();
    clock = new Date(START.getTime() + 601_000);
    const renewed = await credentials();
    // Assess
    expect(stillFirst).toBe(first);
    expect(renewed.accessKeyId).not.toBe(first.accessKeyId);
    expect(renewed.expiration).toEqual(new Date(START.getTime() + 601_000 + 900_000));
    expect(aws.assumeRoleCalls).toHaveLength(2);
  });

  it('turn STS refusing the role into a ConfigurationError naming the role and the source', async () => {
    // Prepare
    const aws = new AbacStandIn(() => START);
    const wrongRole = `arn:aws:iam::${aws.account}:role/someone-else`;
    const credentials = createSourceRoleCredentials({ sts: aws.sts, roleArn: wrongRole, now: () => START })(
      'epic',
    );
    // Act
    const refused = await credentials().catch((error: Error) => error);
    // Assess
    expect(refused).toEqual(
      new ConfigurationError(
        `cannot assume the source access role ${wrongRole} for source epic: AccessDenied`,
      ),
    );
  });
});

/**
 * The token minter's runtime, end to end over the stand-in account: the
 * registry in a real (embedded) S3, STS, Secrets Manager and KMS enforcing
 * the source access role's tag conditions, a real token endpoint.
 */
describe('the AWS runtime minting a token', () => {
  let s3: EmbeddedS3;
  let token: TokenServer;
  let clock: Date;
  let aws: AbacStandIn;
  beforeAll(async () => {
    s3 = await startEmbeddedS3();
    await s3.createBucket(BUCKET);
    token = await startTokenServer((request) =>
      request.path === '/fhir/.well-known/smart-configuration'
        ? { status: 200, body: { token_endpoint: token.tokenUrl } }
        : {
            status: 200,
            body: {
              access_token: `token-for-${new URLSearchParams(request.body).get('client_assertion')?.length}`,
              token_type: 'bearer',
              expires_in: 3600,
              scope: 'system/*.rs',
            },
          },
    );
  }, 60_000);
  afterAll(async () => {
    await token?.close();
    await s3?.close();
  });
  afterEach(() => {
    token.requests.length = 0;
  });

  async function register(id: string, clientSecret: string) {
    const store = createS3Store({ s3: new S3Client(s3.clientConfig), bucket: BUCKET });
    await store.putJson(registrationKey('', id), {
      id,
      clientSecret,
      settings: { fhirBaseUrl: `${token.baseUrl}/fhir`, allowInsecureHttp: true },
    });
  }

  function runtime(roleArn = aws.roleArn) {
    return createAwsRuntime(
      {
        EXPORT_BUCKET: BUCKET,
        SEALING_KMS_KEY_ID: aws.createSealingKey(),
        SOURCE_ACCESS_ROLE_ARN: roleArn,
        LOG_LEVEL: 'error',
      },
      {
        now: () => clock,
        clients: {
          s3: () => new S3Client(s3.clientConfig),
          sts: () => aws.sts,
          secretsManager: (credentials) => aws.secretsManagerFor(credentials),
          kms: (credentials) => aws.kmsFor(credentials),
        },
      },
    );
  }

  function setUpSource(id: string) {
    const secretArn = aws.putSecret(
      `fhir-bulk-export/${id}`,
      { clientId: `client-${id}`, kmsKeyId: aws.createSigningKey(id) },
      id,
    );
    return secretArn;
  }

  it('reads the secret and signs only as the source, and seals the token to the execution', async () => {
    // Prepare
    clock = START;
    aws = new AbacStandIn(() => clock);
    await register('epic', setUpSource('epic'));
    await register('cerner', setUpSource('cerner'));
    const aws1 = runtime();
    // Act
    const sealed = await createMintTokenHandler(aws1)({ sourceId: 'epic', executionName: 'epic-1' });
    // Assess: every secret read and KMS call was made with a session tagged epic.
    expect(aws.uses.map(({ action, sourceTag }) => `${action} ${sourceTag}`)).toEqual([
      'secretsmanager:GetSecretValue epic',
      'kms:GetPublicKey epic',
      'kms:Sign epic',
    ]);
    expect(token.requestsTo('/auth/token').map((request) => request.form.get('grant_type'))).toEqual([
      'client_credentials',
    ]);
    const opened = await aws1.sealer.open(sealed.sealedToken, sealContext('epic', 'epic-1'));
    expect(opened).toMatch(/^token-for-\d+$/);
  });

  it("cannot read another source's secret: a registration naming it is refused by the tag condition", async () => {
    // Prepare: "intruder" registers epic's secret as its own.
    clock = START;
    aws = new AbacStandIn(() => clock);
    const epicSecret = setUpSource('epic');
    await register('intruder', epicSecret);
    // Act
    const refused = await createMintTokenHandler(runtime())({
      sourceId: 'intruder',
      executionName: 'x-1',
    }).catch((error: Error) => error);
    // Assess
    expect(refused).toEqual(
      new ConfigurationError(`secret ${epicSecret} cannot be read: AccessDeniedException`),
    );
    expect(aws.uses).toEqual([
      expect.objectContaining({ action: 'secretsmanager:GetSecretValue', sourceTag: 'intruder' }),
    ]);
  });

  it('renews the session before it expires: a token minted 11 minutes later signs with fresh credentials', async () => {
    // Prepare
    clock = START;
    aws = new AbacStandIn(() => clock);
    await register('epic', setUpSource('epic'));
    const mint = createMintTokenHandler(runtime());
    await mint({ sourceId: 'epic', executionName: 'epic-1' });
    // Act: past the refresh point of the 15-minute session; a 401 forces a new token (a new signature).
    clock = new Date(START.getTime() + 11 * 60_000);
    await mint({ sourceId: 'epic', executionName: 'epic-1', forceRefresh: true });
    // Assess
    const signatures = aws.uses.filter(({ action }) => action === 'kms:Sign');
    expect(signatures).toHaveLength(2);
    expect(signatures[0]!.accessKeyId).not.toBe(signatures[1]!.accessKeyId);
    expect(aws.assumeRoleCalls).toHaveLength(2);
  });

  it('re-resolves the signing key after an hour, so a rotated key alias is followed', async () => {
    // Prepare
    clock = START;
    aws = new AbacStandIn(() => clock);
    await register('epic', setUpSource('epic'));
    const mint = createMintTokenHandler(runtime());
    await mint({ sourceId: 'epic', executionName: 'epic-1' });
    // Act: within the hour the provider (and its resolved key) is reused; past it, made again.
    clock = new Date(START.getTime() + 30 * 60_000);
    await mint({ sourceId: 'epic', executionName: 'epic-1', forceRefresh: true });
    clock = new Date(START.getTime() + 61 * 60_000);
    await mint({ sourceId: 'epic', executionName: 'epic-1', forceRefresh: true });
    // Assess
    const count = (action: string) => aws.uses.filter((use) => use.action === action).length;
    expect([count('kms:Sign'), count('kms:GetPublicKey'), count('secretsmanager:GetSecretValue')]).toEqual([
      3, 2, 2,
    ]);
  });

  it('mints with client_secret_basic from the secret, touching no KMS key', async () => {
    // Prepare
    clock = START;
    aws = new AbacStandIn(() => clock);
    const secretArn = aws.putSecret(
      'fhir-bulk-export/bcda',
      { clientId: 'bcda-client', clientSecret: 'bcda-secret-value-0123' },
      'bcda',
    );
    const store = createS3Store({ s3: new S3Client(s3.clientConfig), bucket: BUCKET });
    await store.putJson(registrationKey('', 'bcda'), {
      id: 'bcda',
      clientSecret: secretArn,
      settings: {
        fhirBaseUrl: `${token.baseUrl}/fhir`,
        allowInsecureHttp: true,
        auth: 'client_secret_basic',
      },
    });
    // Act
    await createMintTokenHandler(runtime())({ sourceId: 'bcda', executionName: 'bcda-1' });
    // Assess
    expect(aws.uses.map(({ action, sourceTag }) => `${action} ${sourceTag}`)).toEqual([
      'secretsmanager:GetSecretValue bcda',
    ]);
    const [request] = token.requestsTo('/auth/token');
    expect(request!.headers.authorization).toBe(
      `Basic ${Buffer.from('bcda-client:bcda-secret-value-0123').toString('base64')}`,
    );
    expect(request!.form.has('client_assertion')).toBe(false);
  });

  it('fails minting with a ConfigurationError when STS refuses the configured role', async () => {
    // Prepare
    clock = START;
    aws = new AbacStandIn(() => clock);
    await register('epic', setUpSource('epic'));
    const wrongRole = `arn:aws:iam::${aws.account}:role/not-the-source-access-role`;
    // Act
    const refused = await createMintTokenHandler(runtime(wrongRole))({
      sourceId: 'epic',
      executionName: 'epic-1',
    }).catch((error: Error) => error);
    // Assess
    expect(refused).toEqual(
      new ConfigurationError(
        `cannot assume the source access role ${wrongRole} for source epic: AccessDenied`,
      ),
    );
    expect(aws.uses).toEqual([]);
  });
});
