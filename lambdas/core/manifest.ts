import { InvalidManifestError } from '../errors.js';
import { checkFetchableUrl } from './urls.js';
import { isValidInstant } from './validate.js';

export type FileKind = 'output' | 'error' | 'deleted';

export interface ManifestFile {
  readonly kind: FileKind;
  /** Resource type of the lines: the entry's type for output, OperationOutcome for error, Bundle for deleted. */
  readonly resourceType: string;
  /** The type the manifest names (for deleted files, the type of the deleted resources). */
  readonly type: string;
  readonly url: string;
  readonly count?: number;
}

export interface CompletionManifest {
  readonly transactionTime: string;
  readonly request: string;
  readonly requiresAccessToken: boolean;
  readonly files: readonly ManifestFile[];
  /** Absolute URL of the next manifest page, when the server pages its manifest. */
  readonly nextPageUrl?: string;
}

/** Beyond this many files a manifest is treated as hostile (Oracle Health sends ~20,000; we allow 10×). */
export const MAX_MANIFEST_FILES = 200_000;

const RESOURCE_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

/**
 * Validates a completion manifest (IG "Response - Complete Status"). Every
 * fault names the field and what was expected; no URL is echoed, since
 * presigned URLs are credentials.
 */
export function parseCompletionManifest(body: unknown, allowInsecureHttp: boolean): CompletionManifest {
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
      const { type, url, count } = entry as Record<string, unknown>;
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

/** Joins the pages of a paged manifest; transactionTime and requiresAccessToken come from the first page. */
export function mergeManifestPages(pages: readonly CompletionManifest[]): CompletionManifest {
  const [first] = pages;
  if (!first) throw new InvalidManifestError('completion manifest has no pages');
  const files = pages.flatMap((page) => page.files);
  if (files.length > MAX_MANIFEST_FILES) {
    throw new InvalidManifestError(
      `completion manifest lists more than ${MAX_MANIFEST_FILES} files; refusing to process it`,
    );
  }
  return {
    transactionTime: first.transactionTime,
    request: first.request,
    requiresAccessToken: first.requiresAccessToken,
    files,
  };
}
