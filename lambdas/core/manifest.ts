import { InvalidManifestError } from '../errors.js';
import { checkFetchableUrl } from './urls.js';
import { formatSpan, isValidInstant } from './validate.js';

export type FileKind = 'output' | 'error' | 'deleted';

export interface ManifestFile {
  readonly kind: FileKind;
  /** Resource type of the lines: the entry's type for output, OperationOutcome for error, Bundle for deleted. */
  readonly resourceType: string;
  /** The type the manifest names (for deleted files, the type of the deleted resources). */
  readonly type: string;
  readonly url: string;
  readonly count?: number;
  /**
   * `organizeOutputBy=Patient` was asked for and this output file is organized so: its lines are
   * blocks of one patient's resources of several types, each after a `Parameters` header (IG 2.0,
   * "Bulk Data Output File Organization"). `type` and `resourceType` are then the organizing type.
   */
  readonly organizedBy?: 'Patient';
}

/** What the kick-off asked for that changes how the manifest reads. */
export interface ManifestRequest {
  readonly organizeOutputBy?: 'Patient' | undefined;
}

export interface CompletionManifest {
  readonly transactionTime: string;
  readonly request: string;
  readonly requiresAccessToken: boolean;
  readonly files: readonly ManifestFile[];
  /** Absolute URL of the next manifest page, when the server pages its manifest. */
  readonly nextPageUrl?: string;
  /** Files the server listed more than once (the same URL): each is in `files` once. */
  readonly duplicateFiles?: readonly DuplicateFile[];
}

export interface DuplicateFile {
  /** Where the file is in `files`. */
  readonly index: number;
  readonly kind: FileKind;
  readonly type: string;
  /** How many times the manifest lists its URL (2 or more). */
  readonly timesListed: number;
}

/** Beyond this many files a manifest is treated as hostile (Oracle Health sends ~20,000; we allow 10×). */
export const MAX_MANIFEST_FILES = 200_000;

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

/**
 * Validates a completion manifest (IG "Response - Complete Status"). Every
 * fault names the field and what was expected; no URL is echoed, since
 * presigned URLs are credentials.
 */
export function parseCompletionManifest(
  body: unknown,
  allowInsecureHttp: boolean,
  asked: ManifestRequest = {},
): CompletionManifest {
  const fail = (message: string) => new InvalidManifestError(`completion manifest ${message}`);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw fail('is not a JSON object');
  const manifest = body as Record<string, unknown>;

  const { transactionTime, request, requiresAccessToken } = manifest;
  if (typeof transactionTime !== 'string' || !isValidInstant(transactionTime)) {
    throw fail('transactionTime must be a FHIR instant with a timezone');
  }
  if (typeof request !== 'string' || request === '')
    throw fail('request must be the kick-off URL (a string)');
  if (typeof requiresAccessToken !== 'boolean') throw fail('requiresAccessToken must be true or false');
  const organizedBy = organizationOf(manifest.outputOrganizedBy, asked, fail);

  const files: ManifestFile[] = [];
  const readEntries = (field: FileKind, required: boolean) => {
    const entries = manifest[field];
    if (entries === undefined && !required) return;
    if (!Array.isArray(entries)) throw fail(`${field} must be an array`);
    if (files.length + entries.length > MAX_MANIFEST_FILES) {
      throw fail(`lists more than ${MAX_MANIFEST_FILES} files; refusing to process it`);
    }
    entries.forEach((entry, index) => {
      const where = `${field}[${index}]`;
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
        throw fail(`${where} must be an object`);
      const { type: listedType, url, count } = entry as Record<string, unknown>;
      // IG 2.0: "When a resource type is specified in the organizeOutputBy kick-off parameter", `type`
      // need not be given (2.1: SHALL NOT be); an entry that names the organizing type is organized too.
      // One naming another type holds resources outside any patient block (Practitioner…): by type.
      const organized =
        field === 'output' &&
        organizedBy !== undefined &&
        (listedType === undefined || listedType === organizedBy);
      const type = organized ? organizedBy : listedType;
      if (typeof type !== 'string' || !RESOURCE_TYPE.test(type))
        throw fail(`${where}.type must be a FHIR resource type`);
      const check = checkFetchableUrl(url, allowInsecureHttp);
      if (!check.ok) throw fail(`${where}.url ${check.reason}`);
      if (count !== undefined && (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0)) {
        throw fail(`${where}.count must be a non-negative integer when present`);
      }
      if (field === 'error' && type !== 'OperationOutcome')
        throw fail(`${where}.type must be OperationOutcome`);
      files.push({
        kind: field,
        type,
        resourceType: field === 'deleted' ? 'Bundle' : type,
        url: check.url.toString(),
        ...(typeof count === 'number' ? { count } : {}),
        ...(organized ? { organizedBy } : {}),
      });
    });
  };
  readEntries('output', true);
  // `error` is required by the IG, but servers routinely omit an empty one.
  readEntries('error', false);
  readEntries('deleted', false);

  let nextPageUrl: string | undefined;
  if (manifest.link !== undefined) {
    if (!Array.isArray(manifest.link)) throw fail('link must be an array');
    for (const [index, link] of manifest.link.entries()) {
      const { relation, url } = (link ?? {}) as Record<string, unknown>;
      if (relation !== 'next') continue;
      const check = checkFetchableUrl(url, allowInsecureHttp);
      if (!check.ok) throw fail(`link[${index}].url ${check.reason}`);
      nextPageUrl = check.url.toString();
    }
  }
  return { transactionTime, request, requiresAccessToken, files, ...(nextPageUrl ? { nextPageUrl } : {}) };
}

/**
 * How the output files are organized: by the organizing type when the kick-off asked for one. A
 * manifest that says `outputOrganizedBy` (IG 2.1) must say what was asked; one organized although
 * nothing was asked cannot be landed by type, so both fail rather than land files under wrong keys.
 */
function organizationOf(
  stated: unknown,
  asked: ManifestRequest,
  fail: (message: string) => InvalidManifestError,
): 'Patient' | undefined {
  if (stated !== undefined && stated !== asked.organizeOutputBy) {
    throw fail(
      asked.organizeOutputBy === undefined
        ? `outputOrganizedBy is ${typeof stated === 'string' && RESOURCE_TYPE.test(stated) ? stated : 'set'} but the kick-off did not ask for organizeOutputBy`
        : `outputOrganizedBy must be ${asked.organizeOutputBy}, as the kick-off asked`,
    );
  }
  return asked.organizeOutputBy;
}

/**
 * Joins the pages of a paged manifest; transactionTime and requiresAccessToken
 * come from the first page. A file URL listed more than once (on one page or
 * across pages) is kept once, at its first place, and reported in
 * `duplicateFiles`: landing it twice would double its resources downstream
 * with nothing to tell the copies apart, while refusing the export would
 * refuse good data over a listing slip. Listings that disagree about what the
 * file is (kind, type or count) cannot both be right, so they fail.
 */
export function mergeManifestPages(pages: readonly CompletionManifest[]): CompletionManifest {
  const [first] = pages;
  if (!first) throw new InvalidManifestError('completion manifest has no pages');
  const listed = pages.flatMap((page) => page.files);
  if (listed.length > MAX_MANIFEST_FILES) {
    throw new InvalidManifestError(
      `completion manifest lists more than ${MAX_MANIFEST_FILES} files; refusing to process it`,
    );
  }
  const files: ManifestFile[] = [];
  const indexByUrl = new Map<string, number>();
  const timesListed = new Map<number, number>();
  for (const file of listed) {
    const index = indexByUrl.get(file.url);
    if (index === undefined) {
      indexByUrl.set(file.url, files.length);
      files.push(file);
      continue;
    }
    files[index] = sameFile(files[index]!, file);
    timesListed.set(index, (timesListed.get(index) ?? 1) + 1);
  }
  const duplicateFiles = [...timesListed].map(([index, times]) => ({
    index,
    kind: files[index]!.kind,
    type: files[index]!.type,
    timesListed: times,
  }));
  return {
    transactionTime: first.transactionTime,
    request: first.request,
    requiresAccessToken: first.requiresAccessToken,
    files,
    ...(duplicateFiles.length > 0 ? { duplicateFiles } : {}),
  };
}

/** Two listings of one URL, as one file; no URL in the message (presigned URLs are credentials). */
function sameFile(kept: ManifestFile, again: ManifestFile): ManifestFile {
  if (kept.kind !== again.kind || kept.type !== again.type) {
    throw new InvalidManifestError(
      `completion manifest lists one file URL as ${kept.kind} ${kept.type} and again as ${again.kind} ${again.type}`,
    );
  }
  if (kept.count !== undefined && again.count !== undefined && kept.count !== again.count) {
    throw new InvalidManifestError(
      `completion manifest lists one ${kept.kind} ${kept.type} file URL twice with different counts (${kept.count} and ${again.count})`,
    );
  }
  return kept.count === undefined && again.count !== undefined ? { ...kept, count: again.count } : kept;
}

/**
 * A transactionTime ahead of our clock by more than the allowed skew cannot
 * be right: the server has not run that query yet. It would become the next
 * `_since`, and every later delta would ask for changes after it and get none,
 * silently. It is refused rather than clamped: no clamped value is known to be
 * safe as a `_since` (our clock may run ahead of the server's, and then a clamp
 * skips changes), and files under a future `export=` folder mislead readers
 * that partition by date. The previous watermark stays, so once the server is
 * fixed the next run picks up from there. Compared with the clock when the
 * manifest arrives, not at kick-off: a queued job may run its query later.
 */
export function checkTransactionTime(transactionTime: string, now: Date, maxClockSkewSeconds: number): void {
  const ahead = Date.parse(transactionTime) - now.getTime();
  if (ahead <= maxClockSkewSeconds * 1000) return;
  throw new InvalidManifestError(
    `completion manifest transactionTime ${transactionTime} is ${formatSpan(ahead)} ahead of this client's clock (${now.toISOString()}); ` +
      `maxClockSkewSeconds allows ${maxClockSkewSeconds} s. The server's clock or manifest is wrong, and as the next _since it would ` +
      'skip every change until then, so the export is refused and the watermark stays where it was',
  );
}
