import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { beforeAll, describe, expect, it } from 'vitest';
import { BulkExportPipeline } from '../../infra/bulk-export-pipeline.js';
import { actionsOf, identityPolicies, importedSources } from './pipeline-fixture.js';

const BUCKET_KEY = 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:ops-alarms';

let template: Template;
let pipeline: BulkExportPipeline;
beforeAll(() => {
  const stack = new Stack(new App(), 'Own');
  pipeline = new BulkExportPipeline(stack, 'Pipeline', {
    // The unscheduled source only: no schedule, so no scheduler role either.
    sources: [importedSources(stack)[1]!],
    bucket: s3.Bucket.fromBucketAttributes(stack, 'Exports', {
      bucketName: 'hospital-fhir-exports',
      encryptionKey: kms.Key.fromKeyArn(stack, 'ExportsKey', BUCKET_KEY),
    }),
    exportPrefix: 'fhir',
    vpc: ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0123456789abcdef0',
      availabilityZones: ['us-east-1a', 'us-east-1b'],
      privateSubnetIds: ['subnet-0aaaaaaaaaaaaaaa1', 'subnet-0bbbbbbbbbbbbbbb2'],
    }),
    reservedConcurrency: false,
    completionQueue: false,
    alarmTopic: sns.Topic.fromTopicArn(stack, 'OpsAlarms', TOPIC),
  });
  template = Template.fromStack(stack);
});

const objectsUnder = (prefix: string) => ({
  'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, `:s3:::hospital-fhir-exports/${prefix}`]],
});

describe('a pipeline on your own bucket, VPC and alarm topic', () => {
  it('creates no bucket, data key or topic, and tells the functions about yours', () => {
    template.resourceCountIs('AWS::S3::Bucket', 0);
    template.resourceCountIs('AWS::SNS::Topic', 0);
    template.resourceCountIs('AWS::Scheduler::Schedule', 0);
    expect(pipeline.accessLogBucket).toBeUndefined();
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          EXPORT_BUCKET: 'hospital-fhir-exports',
          EXPORT_PREFIX: 'fhir/',
          DATA_KMS_KEY_ID: BUCKET_KEY,
        }),
      },
    });
  });

  it('scopes object access to the export prefix, the Distributed Map reader to its _work/, registry readers to _registry/sources/, the lock reads of Kick Off to _state/', () => {
    const statements = identityPolicies(template).flatMap((policy) => policy.statements);
    const s3Resources = statements
      .filter((statement) =>
        actionsOf(statement).some((action) => action.startsWith('s3:') && action !== 's3:ListBucket'),
      )
      .map((statement) => JSON.stringify(statement.Resource));
    expect(new Set(s3Resources)).toEqual(
      new Set([
        JSON.stringify(objectsUnder('fhir/*')),
        JSON.stringify(objectsUnder('fhir/_work/*')),
        JSON.stringify(objectsUnder('fhir/_registry/sources/*')),
        // Kick Off reads the locks' fence (a chunk kicked off while its export ends)
        JSON.stringify(objectsUnder('fhir/_state/*')),
        // The validation stage (issue 17): reads export folders, writes its report in them and its work objects
        JSON.stringify(objectsUnder('fhir/source=*')),
        JSON.stringify(objectsUnder('fhir/_work/validation/*')),
        JSON.stringify([
          objectsUnder('fhir/source=*/_validation/*'),
          objectsUnder('fhir/source=*/_VALIDATED.json'),
        ]),
        // The warehouse load (issue 18): its work objects, its tables, a re-run's clean-up, its marker; and the
        // query policy's Athena results
        JSON.stringify(objectsUnder('fhir/_work/warehouse/*')),
        JSON.stringify(objectsUnder('fhir/warehouse/*')),
        JSON.stringify([objectsUnder('fhir/warehouse/*'), objectsUnder('fhir/source=*/_LOADED.json')]),
        JSON.stringify(objectsUnder('fhir/source=*/_LOADED.json')),
        JSON.stringify(objectsUnder('fhir/_athena-results/*')),
        // the registry publisher reads the registry objects from the CDK asset bucket
        JSON.stringify({
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':s3:::',
              // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation's Fn::Sub syntax
              { 'Fn::Sub': 'cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}' },
              '/*',
            ],
          ],
        }),
        // clean-up lists open multipart uploads on the bucket itself
        JSON.stringify({
          'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::hospital-fhir-exports']],
        }),
      ]),
    );
    expect(statements).toContainEqual(
      expect.objectContaining({ Action: ['kms:GenerateDataKey', 'kms:Decrypt'], Resource: BUCKET_KEY }),
    );
  });

  it('runs every function in the VPC, with the network-interface permissions Lambda checks on create', () => {
    const functions = Object.entries(template.findResources('AWS::Lambda::Function'))
      // CDK's registry publisher reaches only S3 during a deploy (source-registry.test.ts)
      .filter(([id]) => !id.startsWith('CustomCDKBucketDeployment'))
      .map(([, fn]) => fn);
    // Thirteen Task functions, three of the validation stage, three of the warehouse load, the JWKS function.
    expect(functions).toHaveLength(20);
    for (const fn of functions) {
      expect(fn.Properties.VpcConfig.SubnetIds).toEqual([
        'subnet-0aaaaaaaaaaaaaaa1',
        'subnet-0bbbbbbbbbbbbbbb2',
      ]);
      expect(fn.Properties).not.toHaveProperty('ReservedConcurrentExecutions');
      const roleId = fn.Properties.Role['Fn::GetAtt'][0] as string;
      const actions = identityPolicies(template)
        .filter((policy) => policy.roles.includes(roleId))
        .flatMap((policy) => policy.statements.flatMap(actionsOf));
      expect(actions).toEqual(
        expect.arrayContaining(['ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface']),
      );
    }
  });

  it('sends alarms to your topic and creates no example downstream', () => {
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm'));
    expect(alarms.length).toBeGreaterThan(0);
    for (const alarm of alarms) expect(alarm.Properties.AlarmActions).toEqual([TOPIC]);
    // The clean-up of ended exports, the validation stage's and the warehouse load's triggers; no
    // completion-marker queue (and outcome metrics are EMF now).
    const ruleSources = Object.values(template.findResources('AWS::Events::Rule')).map(
      (rule) => rule.Properties.EventPattern.source,
    );
    expect(ruleSources).toEqual([['aws.states'], ['aws.s3'], ['aws.s3']]);
    expect(pipeline.completionQueue).toBeUndefined();
  });
});
