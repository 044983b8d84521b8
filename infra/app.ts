/**
 * The CDK app behind `cdk.json` (`npx tsx infra/app.ts`): one BulkExportStack
 * configured from `infra/pipeline.config.json`, or the file given with
 * `cdk synth -c config=<file>`, checked by cdk-nag's AwsSolutions and HIPAA
 * Security packs. Synth needs no AWS credentials.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { BulkExportStack } from './bulk-export-stack.js';
import { loadPipelineConfig, stackPropsFromConfig } from './config.js';
import { addNagChecks } from './nag.js';

const app = new App();
const configFile = app.node.tryGetContext('config') as string | undefined;
const config = loadPipelineConfig(
  configFile ? resolve(configFile) : fileURLToPath(new URL('pipeline.config.json', import.meta.url)),
);
new BulkExportStack(app, config.stackName ?? 'FhirBulkExport', stackPropsFromConfig(config));
addNagChecks(app);
app.synth();
