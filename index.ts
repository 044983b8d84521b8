/**
 * The package's public entry: the construct, its props and the types of its
 * grant and metric API. The Lambda code ships prebundled in dist/lambdas
 * (`npm run build:lambdas`), so a CDK app that imports this needs neither
 * esbuild nor the repository's sources.
 */
export {
  BulkExportPipeline,
  type BulkExportPipelineProps,
  type BulkExportSourceProps,
  COMPLETION_MARKER_SUFFIX,
  EVENT_SOURCE,
  type ExportBucketProps,
  type ExportErrorCategory,
  type ExportLifecycleProps,
  type ExportScheduleProps,
  type ExportSourceSettings,
  type ExportsFailedMetricOptions,
  type JwksDomainProps,
  type PipelineMetricOptions,
  type SigningKeyRotation,
  type SigningKeySpec,
  SOURCE_TAG_KEY,
  type TaskFunctionName,
} from './infra/bulk-export-pipeline.js';
export {
  BulkExportStack,
  type BulkExportStackProps,
  type ConfiguredSourceProps,
} from './infra/bulk-export-stack.js';
export { EXPORT_ERROR_CATEGORIES } from './infra/constructs/monitoring.js';
