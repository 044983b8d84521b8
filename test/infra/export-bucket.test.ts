import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { describe, expect, it } from 'vitest';
import { ExportBucket } from '../../infra/constructs/export-bucket.js';
import { partStack } from './part-context.js';
import { synthesize } from './pipeline-fixture.js';

describe('ExportBucket', () => {
  it('creates the export bucket, its data key and its access log bucket, with rules under the export prefix', () => {
    const { stack, context } = partStack();
    const part = new ExportBucket(stack, 'Bucket', { context });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::S3::Bucket', 2);
    expect(part.dataKey).toBe(part.bucket.encryptionKey);
    const rules = Object.values(template.findResources('AWS::S3::Bucket')).flatMap(
      (bucket) => bucket.Properties.LifecycleConfiguration.Rules as { Id: string; Prefix?: string }[],
    );
    expect(rules.find((rule) => rule.Id === 'expire-work-files')).toMatchObject({ Prefix: 'fhir/_work/' });
  });

  it('creates nothing for a bucket you bring, and uses its key', () => {
    const { stack, context } = partStack();
    const bucket = s3.Bucket.fromBucketName(stack, 'Yours', 'your-bucket');
    const part = new ExportBucket(stack, 'Bucket', { context, bucket });
    Template.fromStack(stack).resourceCountIs('AWS::S3::Bucket', 0);
    expect(part.bucket).toBe(bucket);
    expect(part.accessLogBucket).toBeUndefined();
    expect(part.dataKey).toBeUndefined();
  });

  it('keeps, inside the pipeline, the logical ids the bucket and keys had before the split (no replacement on update)', () => {
    const { stack, logicalId } = synthesize();
    const pipeline = stack.pipeline;
    expect(pipeline.node.findChild('Bucket')).toBeInstanceOf(ExportBucket);
    expect([pipeline.bucket, pipeline.dataKey!, pipeline.accessLogBucket!].map(logicalId)).toEqual([
      'PipelineExportBucket2008F891',
      'PipelineDataKeyA5C7FABC',
      'PipelineAccessLogBucket4BD8E1ED',
    ]);
  });
});
