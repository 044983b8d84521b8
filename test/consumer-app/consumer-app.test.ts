import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * The construct used as a library: test/consumer-app/app.ts imports it as
 * the package (`fhir-bulk-export-pipeline`, resolved through package.json
 * `exports`) and is synthesized in a process of its own, from its own
 * directory, with no bundling of ours involved: the functions come from the
 * prebundled dist/lambdas.
 */
const HERE = fileURLToPath(new URL('.', import.meta.url));

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>;
let outdir: string;
let resources: Resources;

beforeAll(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'consumer-app-'));
  await promisify(execFile)(process.execPath, ['--import', 'tsx', join(HERE, 'app.ts')], {
    cwd: HERE,
    env: { ...process.env, CDK_OUTDIR: outdir },
  });
  resources = JSON.parse(readFileSync(join(outdir, 'Analytics.template.json'), 'utf8')).Resources;
}, 120_000);

const ofType = (type: string) => Object.entries(resources).filter(([, resource]) => resource.Type === type);

describe('a separate CDK app using the package', () => {
  it('synthesizes the pipeline with the prebundled functions as its assets', () => {
    const functions = ofType('AWS::Lambda::Function').filter(
      ([, fn]) => fn.Properties.Runtime === 'nodejs24.x',
    );
    expect(functions).toHaveLength(20);
    const manifest = JSON.parse(readFileSync(join(outdir, 'Analytics.assets.json'), 'utf8')) as {
      files: Record<string, { source: { path: string } }>;
    };
    for (const [, fn] of functions) {
      const key = (fn.Properties.Code as { S3Key: string }).S3Key.replace(/\.zip$/, '');
      expect(existsSync(join(outdir, manifest.files[key]!.source.path, 'index.mjs'))).toBe(true);
    }
  });

  it('tags the secret it created with its source id, for the token minter’s ABAC', () => {
    const [, secret] = ofType('AWS::SecretsManager::Secret')[0]!;
    expect(secret.Properties.Tags).toContainEqual({ Key: 'fhir-bulk-export-source', Value: 'epic-prod' });
  });

  it('grants the ETL role the published data of its source only, and the orchestrator StartExecution', () => {
    const policies = ofType('AWS::IAM::Policy').map(([, policy]) => policy.Properties);
    const etl = JSON.stringify(policies.find((policy) => JSON.stringify(policy.Roles).includes('EtlRole')));
    expect(etl).toContain('/fhir/source=epic-prod/*');
    expect(etl).not.toMatch(/_work|_registry|_state/);
    const orchestrator = JSON.stringify(
      policies.find((policy) => JSON.stringify(policy.Roles).includes('Orchestrator')),
    );
    expect(orchestrator).toContain('states:StartExecution');
  });

  it('alarms on the pipeline’s metric with the dimensions the functions emit', () => {
    const alarm = ofType('AWS::CloudWatch::Alarm').find(([id]) => id.startsWith('EpicAuthFailures'))!;
    expect(alarm[1].Properties).toMatchObject({ Namespace: 'FhirBulkExport', MetricName: 'ExportsFailed' });
    // The dimension set [service, SourceId, ErrorCategory], in any order.
    expect(new Set(alarm[1].Properties.Dimensions as unknown[])).toEqual(
      new Set([
        { Name: 'ErrorCategory', Value: 'auth' },
        { Name: 'service', Value: 'fhir-bulk-export' },
        { Name: 'SourceId', Value: 'epic-prod' },
      ]),
    );
  });
});
