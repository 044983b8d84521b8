import type { Bearer } from '../adapters/fhir-http.js';
import {
  type CompletionManifest,
  type ManifestRequest,
  mergeManifestPages,
  parseCompletionManifest,
} from '../core/manifest.js';
import { assertTokenMayGoTo } from '../core/origins.js';
import { interpretStatusResponse } from '../core/status.js';
import { InvalidManifestError, TransientServerError } from '../errors.js';
import type { Runtime } from '../runtime.js';

/** Manifest pages we follow before calling the manifest hostile. */
const MAX_MANIFEST_PAGES = 1000;

/**
 * Manifest paging: Poll Export Status reads the manifest at completion,
 * Download File again when a file link has expired.
 */
/** The completion manifest of a 200 status: its first page, then every `next` page, merged. */
export async function readManifestPages(
  runtime: Pick<Runtime, 'fhir'>,
  firstPage: unknown,
  bearer: Bearer,
  allowInsecureHttp: boolean,
  now: Date,
  asked: ManifestRequest = {},
): Promise<CompletionManifest> {
  const pages: CompletionManifest[] = [parseCompletionManifest(firstPage, allowInsecureHttp, asked)];
  for (let next = pages[0]?.nextPageUrl; next; next = pages.at(-1)?.nextPageUrl) {
    if (pages.length >= MAX_MANIFEST_PAGES)
      throw new InvalidManifestError(`completion manifest has more than ${MAX_MANIFEST_PAGES} pages`);
    // Each page is fetched with the token: a link that leads elsewhere would hand it over.
    assertTokenMayGoTo(next, bearer.audience, `manifest page ${pages.length}'s link to the next page`);
    const page = await runtime.fhir.send(
      { method: 'GET', url: next, headers: { Accept: 'application/json' } },
      bearer,
    );
    const pageOutcome = interpretStatusResponse(page, now);
    if (pageOutcome.outcome !== 'complete') {
      const reason =
        pageOutcome.outcome === 'in-progress' ? `answered HTTP ${page.status}` : pageOutcome.reason;
      throw new TransientServerError(
        `manifest page ${pages.length + 1}: ${reason}`,
        pageOutcome.retryAfterSeconds,
      );
    }
    pages.push(parseCompletionManifest(pageOutcome.manifestBody, allowInsecureHttp, asked));
  }
  return mergeManifestPages(pages);
}
