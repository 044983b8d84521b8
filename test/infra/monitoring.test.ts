import { Duration, Stack } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { EXPORT_ERROR_CATEGORIES, Monitoring, PipelineMetrics } from '../../infra/constructs/monitoring.js';
import { synthesize } from './pipeline-fixture.js';

describe('Monitoring', () => {
  const { stack, template, logicalId } = synthesize();
  const part = stack.pipeline.node.findChild('Monitoring') as Monitoring;

  it('is the part with the topic, the alarms (auth failures among them) and the dashboard', () => {
    expect(part).toBeInstanceOf(Monitoring);
    expect(part.alarms.map((alarm) => alarm.node.id)).toContain('AuthFailuresAlarm');
    expect(part.alarms).toHaveLength(Object.keys(template.findResources('AWS::CloudWatch::Alarm')).length);
  });

  it('graphs failures of every error category, one line each', () => {
    const body = JSON.stringify(
      template.toJSON().Resources[logicalId(part.dashboard)].Properties.DashboardBody,
    );
    for (const category of EXPORT_ERROR_CATEGORIES)
      expect(body).toContain(String.raw`\"ErrorCategory\",\"${category}\"`);
  });

  it("graphs the running exports' age and chunk progress per source by SEARCH, so it does not grow with sources", () => {
    const body = JSON.stringify(
      template.toJSON().Resources[logicalId(part.dashboard)].Properties.DashboardBody,
    );
    for (const metricName of ['ExportAge', 'ChunksDone', 'ChunksTotal']) {
      expect(body).toContain(
        String.raw`SEARCH('{\\\"FhirBulkExport\\\",service,SourceId} service=\\\"fhir-bulk-export\\\" MetricName=\\\"${metricName}\\\"', 'Maximum', 300)`,
      );
    }
    // Each chunk line is named by its source, by CloudWatch's dynamic label.
    expect(body).toContain(`${'$'}{PROP('Dim.SourceId')} done`);
    // No source is named in the dashboard: a source added later appears without a deploy.
    expect(body).not.toMatch(/SourceId\\",\\"/);
  });
});

describe('PipelineMetrics', () => {
  it('uses the namespace it is given and the service dimension always', () => {
    const metric = new PipelineMetrics('Team/Fhir').exportsFailed({ period: Duration.hours(1) });
    const config = Stack.prototype.resolve.call(new Stack(), metric.toMetricConfig()) as {
      metricStat: { namespace: string; period: Duration; dimensions: unknown[] };
    };
    expect(config.metricStat.namespace).toBe('Team/Fhir');
    expect(config.metricStat.dimensions).toEqual([{ name: 'service', value: 'fhir-bulk-export' }]);
  });

  it("reads a running export's age in the one dimension set Poll Status emits it in, [service, SourceId]", () => {
    const metric = new PipelineMetrics('FhirBulkExport').exportAge({ sourceId: 'epic-prod' });
    const config = Stack.prototype.resolve.call(new Stack(), metric.toMetricConfig()) as {
      metricStat: { metricName: string; statistic: string; dimensions: unknown[] };
    };
    expect(config.metricStat).toMatchObject({ metricName: 'ExportAge', statistic: 'Maximum' });
    expect(
      [...(config.metricStat.dimensions as { name: string }[])].sort((a, b) => a.name.localeCompare(b.name)),
    ).toEqual([
      { name: 'service', value: 'fhir-bulk-export' },
      { name: 'SourceId', value: 'epic-prod' },
    ]);
  });
});
