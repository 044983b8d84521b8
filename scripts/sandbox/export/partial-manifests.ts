/**
 * `allowPartialManifests=true` (IG 2.0, "Response - In-Progress Status"): while the job runs, a 202
 * may carry "an output manifest … populated with a partial set of output files", and "Once
 * returned, the Data Provider SHALL NOT alter a manifest when it is returned in subsequent
 * requests, with the exception of optionally adding a link field pointing to a manifest with
 * additional output files". So the files are cut into pages of a fixed size in output order, and a
 * page is published only once every file on it is ready (its content never changes after); each
 * published page links the next published one. At completion every page is published (the last
 * may be short) and the deleted files, known only then, come on a page of their own. Error files
 * (the ignored parameters, known at kick-off) are on the first page.
 */
import type { ExportFile, ExportJob } from './jobs.js';

export interface ManifestPage {
  readonly output: readonly ExportFile[];
  readonly error: readonly ExportFile[];
  readonly deleted: readonly ExportFile[];
  /** The next published page's number, when there is one. */
  readonly next?: number;
}

/** Output files ready by `nowMs`: in proportion to the job's elapsed duration; all once it is complete. */
export function readyOutputFiles(job: ExportJob, nowMs: number): number {
  const outputs = job.files().filter((file) => file.kind === 'output').length;
  if (job.state(nowMs) === 'complete') return outputs;
  const { createdAtMs, durationMs } = job.init;
  if (durationMs <= 0) return outputs;
  return Math.min(outputs, Math.floor((outputs * Math.max(0, nowMs - createdAtMs)) / durationMs));
}

/** The pages published by `nowMs` (none while the first is not full). */
export function publishedPages(job: ExportJob, nowMs: number, pageSize: number): ManifestPage[] {
  const files = job.files();
  const outputs = files.filter((file) => file.kind === 'output');
  const errors = files.filter((file) => file.kind === 'error');
  const jobState = job.state(nowMs);
  const complete = jobState === 'complete';
  // A failed job keeps serving what it had listed: "a Data Consumer MAY process resources that have
  // already been retrieved" (IG, manifest `link`); its pages no longer grow.
  if (jobState === 'failed') nowMs = Math.min(nowMs, job.init.createdAtMs + job.init.durationMs - 1);
  const ready = complete ? outputs.length : readyOutputFiles(job, nowMs);
  const outputPages = complete
    ? Math.max(1, Math.ceil(outputs.length / pageSize))
    : Math.floor(ready / pageSize);
  const pages: Omit<ManifestPage, 'next'>[] = [];
  for (let page = 0; page < outputPages; page++) {
    pages.push({
      output: outputs.slice(page * pageSize, (page + 1) * pageSize),
      error: page === 0 ? errors : [],
      deleted: [],
    });
  }
  const deleted = files.filter((file) => file.kind === 'deleted');
  if (complete && deleted.length > 0) pages.push({ output: [], error: [], deleted });
  return pages.map((page, at) => (at + 1 < pages.length ? { ...page, next: at + 1 } : page));
}
