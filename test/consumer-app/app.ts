/**
 * A CDK app of someone else's: it knows the pipeline only as the package
 * `fhir-bulk-export-pipeline` (its public entry), brings its own secret, and
 * uses the grant and metric API. Run as its own process by
 * consumer-app.test.ts; writes the cloud assembly to CDK_OUTDIR.
 */
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { BulkExportPipeline } from 'fhir-bulk-export-pipeline';

const app = new App();
const stack = new Stack(app, 'Analytics', { env: { account: '123456789012', region: 'us-east-2' } });

const secret = new secretsmanager.Secret(stack, 'EpicClient', {
  description: 'SMART Backend Services client of the analytics team (clientId, kmsKeyId)',
});
const pipeline = new BulkExportPipeline(stack, 'Exports', {
  sources: [
    {
      id: 'epic-prod',
      clientSecret: secret,
      settings: { fhirBaseUrl: 'https://fhir.epic.example.org/api/FHIR/R4', export: { level: 'system' } },
      schedule: { expression: 'cron(0 3 * * ? *)' },
    },
  ],
  exportPrefix: 'fhir/',
  completionQueue: false,
});

const etl = new iam.Role(stack, 'EtlRole', { assumedBy: new iam.ServicePrincipal('glue.amazonaws.com') });
pipeline.grantReadExports(etl, 'epic-prod');
const scheduler = new iam.Role(stack, 'Orchestrator', {
  assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
});
pipeline.grantStartExport(scheduler);

new cloudwatch.Alarm(stack, 'EpicAuthFailures', {
  metric: pipeline.metricExportsFailed({
    sourceId: 'epic-prod',
    errorCategory: 'auth',
    period: Duration.hours(1),
  }),
  threshold: 1,
  evaluationPeriods: 1,
});

app.synth();
