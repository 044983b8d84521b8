/**
 * Export jobs: what was asked, how far along it is, and the files it produced.
 * A job's files are slices of the dataset, generated when read, never stored.
 */
import type { Dataset, ExportableType, ResourceSelection } from '../data/types.js';
import { FaultCounter, type FaultPlan } from '../faults.js';
import type { OperationOutcomeIssue } from '../http.js';
import { arraySource, type LineSource, withReplacedLine, withRewrittenLines } from './file-source.js';
import type { ExportLevel } from './kickoff-params.js';
import {
  chooseNonConformant,
  type NonConformantResources,
  nonConformanceRewriter,
} from './non-conformance.js';
import { organizedFiles } from './organized-files.js';

export type JobState = 'in-progress' | 'complete' | 'failed' | 'deleted' | 'expired';

export interface ExportFile {
  /** The file's name in its URL (`Patient.1.ndjson`, `error.1.ndjson`, `deleted.1.ndjson`). */
  readonly name: string;
  readonly kind: 'output' | 'error' | 'deleted';
  /** Resource type of every line: the exported type, `OperationOutcome` or `Bundle`. */
  readonly type: string;
  /** Lines in the file. */
  readonly count: number;
  /** What the manifest says (differs from `count` under the countMismatch fault). */
  readonly manifestCount: number;
  /** `organizeOutputBy=Patient`: a file of patient blocks of several types (`type` is then Patient). */
  readonly organizedBy?: 'Patient';
  /** Index in the manifest's `output` array (output files only). */
  readonly outputIndex?: number;
  /** The true content. */
  readonly source: LineSource;
  /** What is served (the true content, unless the malformedLine fault hits this file). */
  readonly servedSource: LineSource;
  /** Per-file fault counters. */
  readonly faults: FaultCounter;
}

export interface JobInit {
  readonly id: string;
  readonly clientId: string;
  readonly level: ExportLevel;
  readonly statusUrl: string;
  /** The kick-off URL (without its parameters for a POST, as the IG says). */
  readonly requestUrl: string;
  readonly createdAtMs: number;
  readonly durationMs: number;
  readonly faults: FaultPlan;
  readonly types: readonly ExportableType[];
  readonly since?: string;
  readonly until?: string;
  readonly patientIndexes?: readonly number[];
  /** The `patient` parameter's Patient ids, when given (patientIndexes then holds their indexes). */
  readonly patientIds?: readonly string[];
  readonly elements: ReadonlyMap<ExportableType, readonly string[]>;
  readonly typeFilters: ReadonlyMap<ExportableType, readonly string[]>;
  /** Parameters ignored under `Prefer: handling=lenient`, reported in `error[]`. */
  readonly ignored: readonly OperationOutcomeIssue[];
  readonly requiresAccessToken: boolean;
  readonly resourcesPerFile: number;
  readonly groupId?: string;
  /** `includeAssociatedData` values the server accepted. */
  readonly includeAssociatedData: readonly string[];
  /** Stays in progress until deleted (fault neverCompleteAboveMembers). */
  readonly neverCompletes?: boolean;
  /** Fails once its duration has passed (faults jobFailure, jobFailures). */
  readonly fails?: boolean;
  /** `organizeOutputBy=Patient` (export/organized-files.ts). */
  readonly organizeOutputBy?: 'Patient';
  /** `allowPartialManifests=true` (export/partial-manifests.ts). */
  readonly allowPartialManifests?: boolean;
}

/** Deleted resources per `Bundle` line of a `deleted[]` file. */
const DELETIONS_PER_BUNDLE = 100;

export class ExportJob {
  readonly transactionTime: string;
  /** Per-export fault counters (status polls). */
  readonly faults = new FaultCounter();
  #deleted = false;
  readonly #abort = new AbortController();
  #files: readonly ExportFile[] | undefined;
  #nonConformant: NonConformantResources | undefined;

  constructor(
    readonly init: JobInit,
    private readonly dataset: Dataset,
  ) {
    this.transactionTime = new Date(init.createdAtMs).toISOString();
  }

  get id(): string {
    return this.init.id;
  }

  get clientId(): string {
    return this.init.clientId;
  }

  state(nowMs: number): JobState {
    if (this.#deleted) return 'deleted';
    if (this.init.faults.jobExpiry) return 'expired';
    if (this.init.neverCompletes) return 'in-progress';
    if (nowMs - this.init.createdAtMs < this.init.durationMs) return 'in-progress';
    return this.init.fails ? 'failed' : 'complete';
  }

  /** Percent done, for X-Progress. */
  progress(nowMs: number): number {
    // A stuck export looks like a slow one: its progress creeps up and stops short of the end.
    if (this.init.neverCompletes && this.init.durationMs === 0) return 99;
    if (this.init.durationMs === 0) return 100;
    return Math.min(99, Math.floor(((nowMs - this.init.createdAtMs) / this.init.durationMs) * 100));
  }

  markDeleted(): void {
    this.#deleted = true;
    this.#abort.abort();
  }

  /** Aborted when the export is deleted: background work for it stops. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  selection(type: ExportableType): ResourceSelection {
    const { since, until, patientIndexes, elements, typeFilters } = this.init;
    // transactionTime bounds the export: nothing modified after it (IG, transactionTime).
    const end = until !== undefined && until < this.transactionTime ? until : this.transactionTime;
    return {
      type,
      ...(since !== undefined ? { since } : {}),
      until: end,
      ...(patientIndexes !== undefined ? { patientIndexes } : {}),
      ...(typeFilters.get(type) ? { typeFilters: typeFilters.get(type)! } : {}),
      ...(elements.get(type) ? { elements: elements.get(type)! } : {}),
    };
  }

  /**
   * The resources the nonConformant fault breaks, by kind (empty lists without the fault). Computed
   * once: the kick-off calls it first, so a count the export cannot meet is refused there.
   */
  nonConformantResources(): NonConformantResources {
    this.#nonConformant ??= chooseNonConformant(this.init.faults.nonConformant ?? {}, (type) =>
      this.init.types.includes(type) ? this.dataset.lines(this.selection(type)) : undefined,
    );
    return this.#nonConformant;
  }

  /** Output, error and deleted files, computed on first use. */
  files(): readonly ExportFile[] {
    this.#files ??= this.#buildFiles();
    return this.#files;
  }

  file(name: string): ExportFile | undefined {
    return this.files().find((f) => f.name === name);
  }

  #buildFiles(): ExportFile[] {
    const { faults, resourcesPerFile } = this.init;
    const rewrite = nonConformanceRewriter(this.nonConformantResources());
    const withFault = (source: LineSource): LineSource =>
      faults.nonConformant === undefined ? source : withRewrittenLines(source, rewrite);
    const files: ExportFile[] = [];
    const failedFiles: string[] = [];
    let outputIndex = 0;
    if (this.init.organizeOutputBy === 'Patient') {
      const selection = (type: ExportableType) => this.selection(type);
      for (const file of organizedFiles(this.dataset, this.init.types, this.init.patientIndexes, selection)) {
        const source = withFault(file.source);
        files.push({
          name: file.name,
          kind: 'output',
          type: 'Patient',
          organizedBy: 'Patient',
          count: file.count,
          manifestCount: file.count,
          outputIndex: outputIndex++,
          source,
          servedSource: source,
          faults: new FaultCounter(),
        });
      }
    }
    for (const type of this.init.organizeOutputBy === 'Patient' ? [] : this.init.types) {
      const selection = this.selection(type);
      const total = this.dataset.count(selection);
      for (let i = 0; i * resourcesPerFile < total; i++) {
        const skip = i * resourcesPerFile;
        const planned = Math.min(resourcesPerFile, total - skip);
        // someFilesFailed: the file the server could not finish holds what it wrote before failing.
        const failed = faults.someFilesFailed === true && i % 2 === 1;
        const count = failed ? Math.min(1, planned) : planned;
        if (failed) failedFiles.push(`${type}.${i + 1}.ndjson`);
        const dataset = this.dataset;
        const source: LineSource = withFault({
          lines: (from) => dataset.lines(selection, skip + from, Math.max(0, count - from)),
        });
        let servedSource = source;
        const bad = faults.malformedLine;
        if (bad?.type === type && bad.line - 1 >= skip && bad.line - 1 < skip + count) {
          servedSource = withReplacedLine(source, bad.line - 1 - skip, `{"resourceType":"${type}","id":`);
        }
        const mismatch = faults.countMismatch?.type === type && i === 0 ? faults.countMismatch.delta : 0;
        files.push({
          name: `${type}.${i + 1}.ndjson`,
          kind: 'output',
          type,
          count,
          manifestCount: Math.max(0, planned + mismatch),
          outputIndex: outputIndex++,
          source,
          servedSource,
          faults: new FaultCounter(),
        });
      }
    }

    const errors = this.#errorLines(failedFiles);
    if (errors.length > 0) files.push(staticFile('error.1.ndjson', 'error', 'OperationOutcome', errors));

    if (this.init.since !== undefined) {
      const bundles = this.#deletedLines();
      if (bundles.length > 0) files.push(staticFile('deleted.1.ndjson', 'deleted', 'Bundle', bundles));
    }
    return files;
  }

  #errorLines(failedFiles: readonly string[]): string[] {
    const lines = this.init.ignored.map((issue) =>
      JSON.stringify({ resourceType: 'OperationOutcome', issue: [issue] }),
    );
    if (this.init.faults.someFilesFailed) {
      // The reference server's wording: the diagnostics name the file by the name its URL ends with.
      failedFiles.forEach((name, at) => {
        lines.push(
          JSON.stringify({
            resourceType: 'OperationOutcome',
            issue: [
              {
                severity: at === 0 ? 'fatal' : 'error',
                code: 'exception',
                diagnostics: `Failed to export ${name}`,
              },
            ],
          }),
        );
      });
      lines.push(
        JSON.stringify({
          resourceType: 'OperationOutcome',
          issue: [
            {
              severity: 'information',
              code: 'informational',
              diagnostics: 'Injected fault (someFilesFailed): the export finished; see the other issues',
            },
          ],
        }),
      );
    }
    if (this.init.faults.errorFile) {
      for (const type of this.init.types) {
        lines.push(
          JSON.stringify({
            resourceType: 'OperationOutcome',
            issue: [
              {
                severity: 'error',
                code: 'processing',
                diagnostics: `Injected fault (errorFile): some ${type} resources could not be exported`,
              },
            ],
          }),
        );
      }
    }
    return lines;
  }

  #deletedLines(): string[] {
    const entries = this.init.types.flatMap((type) => this.dataset.deletions(this.selection(type)));
    const lines: string[] = [];
    for (let i = 0; i < entries.length; i += DELETIONS_PER_BUNDLE) {
      const batch = entries.slice(i, i + DELETIONS_PER_BUNDLE);
      const lastUpdated =
        batch
          .map((e) => e.lastUpdated)
          .sort()
          .at(-1) ?? '';
      lines.push(
        JSON.stringify({
          resourceType: 'Bundle',
          id: `${this.id}-deleted-${i / DELETIONS_PER_BUNDLE + 1}`,
          meta: { lastUpdated },
          type: 'transaction',
          entry: batch.map((e) => ({ request: { method: 'DELETE', url: `${e.type}/${e.id}` } })),
        }),
      );
    }
    return lines;
  }
}

function staticFile(name: string, kind: ExportFile['kind'], type: string, lines: string[]): ExportFile {
  const source = arraySource(lines);
  return {
    name,
    kind,
    type,
    count: lines.length,
    manifestCount: lines.length,
    source,
    servedSource: source,
    faults: new FaultCounter(),
  };
}
