import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { describe, expect, it } from 'vitest';
import {
  loadPipelineConfig,
  type PipelineConfig,
  PipelineConfigError,
  parsePipelineConfig,
  stackPropsFromConfig,
} from '../../infra/config.js';

const EXAMPLE = fileURLToPath(new URL('../../infra/pipeline.config.json', import.meta.url));

const SOURCE = {
  id: 'epic-prod',
  clientSecret: 'fhir-bulk-export/epic-prod',
  settings: { fhirBaseUrl: 'https://fhir.example.org/r4' },
};

describe('the example config', () => {
  it('loads, with one scheduled source whose secret is named', () => {
    const config = loadPipelineConfig(EXAMPLE);
    expect(config.sources).toHaveLength(1);
    expect(config.sources[0]).toMatchObject({
      id: 'example-ehr',
      clientSecret: 'fhir-bulk-export/example-ehr',
      schedule: { expression: 'cron(0 2 * * ? *)', timeZone: 'America/Chicago', flexibleWindowMinutes: 30 },
    });
  });

  it('becomes stack props in CDK units, environment-agnostic unless pinned', () => {
    const props = stackPropsFromConfig(loadPipelineConfig(EXAMPLE));
    expect(props.env).toBeUndefined();
    const schedule = props.pipeline.sources[0]!.schedule!;
    expect(schedule.flexibleTimeWindow!.toMinutes()).toBe(30);
    expect(props.pipeline.lifecycle!.workExpiration!.toDays()).toBe(7);
    expect(props.pipeline.longExportThreshold!.toHours()).toBe(24);
    expect(props.pipeline.removalPolicy).toBe(RemovalPolicy.RETAIN);
  });
});

describe('stackPropsFromConfig', () => {
  it('pins the environment, destroys on request and turns day counts into lifecycle transitions', () => {
    const config: PipelineConfig = {
      account: '123456789012',
      region: 'us-east-2',
      removalPolicy: 'destroy',
      sources: [SOURCE],
      lifecycle: {
        exportInfrequentAccessAfterDays: 30,
        exportGlacierAfterDays: 180,
        exportExpirationDays: 2555,
      },
    };
    const props = stackPropsFromConfig(config);
    expect(props.env).toEqual({ account: '123456789012', region: 'us-east-2' });
    expect(props.pipeline.removalPolicy).toBe(RemovalPolicy.DESTROY);
    expect(
      props.pipeline.lifecycle!.exportTransitions!.map((transition) => [
        transition.storageClass,
        transition.transitionAfter!.toDays(),
      ]),
    ).toEqual([
      [s3.StorageClass.INFREQUENT_ACCESS, 30],
      [s3.StorageClass.GLACIER, 180],
    ]);
    expect(props.pipeline.lifecycle!.exportExpiration!.toDays()).toBe(2555);
  });
});

describe('the validation stage key (issue 17)', () => {
  it('passes validation.enabled to the pipeline, and refuses a key it does not know', () => {
    const off = stackPropsFromConfig({ sources: [SOURCE], validation: { enabled: false } });
    expect(off.pipeline.validation).toEqual({ enabled: false });
    expect(stackPropsFromConfig({ sources: [SOURCE] }).pipeline.validation).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'config-'));
    const path = join(dir, 'pipeline.config.json');
    writeFileSync(path, JSON.stringify({ sources: [SOURCE], validation: { enable: false } }));
    expect(() => loadPipelineConfig(path)).toThrow(
      /validation has unknown key\(s\) enable; expected only enabled/,
    );
  });
});

describe('pipeline sizing keys', () => {
  it('carry the expected concurrency and the line ceiling into the pipeline props', () => {
    // Prepare
    const config = parsePipelineConfig({
      sources: [SOURCE],
      maxConcurrentExports: 12,
      maxConcurrentDownloads: 48,
      maxLineBytes: 128 * 1024 * 1024,
    });
    // Act
    const { pipeline } = stackPropsFromConfig(config);
    // Assess
    expect([
      pipeline.maxConcurrentExports,
      pipeline.maxConcurrentDownloads,
      pipeline.maxLineBytes,
    ]).toStrictEqual([12, 48, 128 * 1024 * 1024]);
  });

  it('refuses a line ceiling above what Download File can hold', () => {
    expect(() => parsePipelineConfig({ sources: [SOURCE], maxLineBytes: 512 * 1024 * 1024 })).toThrow(
      'config.maxLineBytes must be an integer from 1024 to 268435456 (got 536870912)',
    );
  });
});

describe('parsePipelineConfig', () => {
  it.each([
    [
      'a misspelled key',
      { sources: [SOURCE], stackname: 'x' },
      'config has unknown key(s) stackname; expected only stackName, account, region,',
    ],
    ['no sources', { sources: [] }, 'config.sources must be a non-empty array of sources'],
    [
      'a source without a secret',
      { sources: [{ id: 'a', settings: SOURCE.settings }] },
      'config.sources[0].clientSecret is required: a non-empty string',
    ],
    [
      'a source without settings',
      { sources: [{ id: 'a', clientSecret: 's' }] },
      'config.sources[0].settings is required: a JSON object',
    ],
    [
      'a window given as text',
      { sources: [{ ...SOURCE, schedule: { expression: 'rate(1 day)', flexibleWindowMinutes: '30' } }] },
      'config.sources[0].schedule.flexibleWindowMinutes must be an integer from 0 to 1440 (got a string)',
    ],
    [
      'a schedule without an expression',
      { sources: [{ ...SOURCE, schedule: { timeZone: 'UTC' } }] },
      'config.sources[0].schedule.expression is required: a non-empty string',
    ],
    [
      'a log retention CloudWatch does not offer',
      { sources: [SOURCE], logRetentionDays: 100 },
      'config.logRetentionDays must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (got 100)',
    ],
    [
      'a zero-day lifecycle',
      { sources: [SOURCE], lifecycle: { workExpirationDays: 0 } },
      'config.lifecycle.workExpirationDays must be an integer from 1 to 36500 (got 0)',
    ],
    [
      'an unknown removal policy',
      { sources: [SOURCE], removalPolicy: 'delete' },
      'config.removalPolicy must be one of retain, destroy (got "delete")',
    ],
    [
      'an alarm address that is not an email',
      { sources: [SOURCE], alarmEmails: ['ops team'] },
      'config.alarmEmails[0] must be an email address',
    ],
    [
      'a signing key spec SMART cannot use',
      { sources: [{ ...SOURCE, signingKeySpec: 'HMAC_256' }] },
      'config.sources[0].signingKeySpec must be one of ECC_NIST_P384, RSA_2048, RSA_3072, RSA_4096 (got "HMAC_256")',
    ],
    [
      "a source setting out of range (the Lambdas' own source schema)",
      { sources: [{ ...SOURCE, settings: { ...SOURCE.settings, maxConcurrency: 0 } }] },
      'config.sources[0].settings.maxConcurrency must be an integer from 1 to 1000 (got 0)',
    ],
  ])('rejects %s, naming the key', (_, raw, message) => {
    expect(() => parsePipelineConfig(raw)).toThrow(PipelineConfigError);
    expect(() => parsePipelineConfig(raw)).toThrow(message);
  });
});

describe('loadPipelineConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pipeline-config-'));

  it('names a file it cannot read', () => {
    const missing = join(dir, 'missing.json');
    expect(() => loadPipelineConfig(missing)).toThrow(`cannot read the pipeline config ${missing}`);
  });

  it('names a file that is not JSON', () => {
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ "sources": [ }');
    expect(() => loadPipelineConfig(broken)).toThrow(`${broken} is not valid JSON`);
  });

  it('prefixes shape errors with the file name', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ sources: [SOURCE], logLevel: 'verbose' }));
    expect(() => loadPipelineConfig(file)).toThrow(
      `${file}.logLevel must be one of debug, info, warn, error (got "verbose")`,
    );
  });
});

describe('signing-key rotation and the JWKS domain in the config', () => {
  it('carry a source’s key generations and the JWKS domain into the stack props', () => {
    // Prepare
    const jwksDomain = {
      domainName: 'jwks.example.org',
      certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abcd-1234',
    };
    const config = parsePipelineConfig({
      sources: [{ ...SOURCE, signingKeyRotation: { current: 2, keepPrevious: true } }],
      jwksDomain,
    });
    // Act
    const props = stackPropsFromConfig(config);
    // Assess (the nag test synthesizes such a stack)
    expect(props.pipeline.sources[0]!.signingKeyRotation).toStrictEqual({ current: 2, keepPrevious: true });
    expect(props.pipeline.jwksDomain).toStrictEqual(jwksDomain);
  });

  it('refuses a certificate outside us-east-1, saying why', () => {
    expect(() =>
      parsePipelineConfig({
        sources: [SOURCE],
        jwksDomain: {
          domainName: 'jwks.example.org',
          certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/abcd',
        },
      }),
    ).toThrow('an ACM certificate ARN in us-east-1 (CloudFront takes no other region)');
  });
});
