import { InvalidManifestError } from '../errors.js';
import type { CompletionManifest, ManifestFile } from './manifest.js';

/**
 * allowPartialManifests (IG 2.0, "Response - In-Progress Status"): while the job runs, a 202 may
 * carry "an output manifest … populated with a partial set of output files", and "Once returned,
 * the Data Provider SHALL NOT alter a manifest when it is returned in subsequent requests, with the
 * exception of optionally adding a link field pointing to a manifest with additional output files
 * or updating output file URLs that have expired. The output files referenced in the manifest SHALL
 * NOT be altered". A file is therefore known by its place in the pages read in order (page 1's
 * files first): files a later poll lists are appended after those already listed, and every file
 * keeps its index, hence its key, from the first listing to the final manifest. URLs may change (the
 * IG allows fresh links), so a file is matched by its place, kind, type and count, not its URL.
 */

/** What earlier polls listed, kept in the work area: no URLs (they may be credentials). */
export interface PartialListing {
  readonly transactionTime: string;
  readonly files: readonly ListedFile[];
  /** Partial download rounds so far (each names its own URL list, see partialUrlsKey). */
  readonly rounds: number;
}

export type ListedFile = Pick<ManifestFile, 'kind' | 'type' | 'count' | 'organizedBy'>;

export const listedFile = (file: ManifestFile): ListedFile => ({
  kind: file.kind,
  type: file.type,
  ...(file.count === undefined ? {} : { count: file.count }),
  ...(file.organizedBy ? { organizedBy: file.organizedBy } : {}),
});

/**
 * Checks that `manifest` (a later partial manifest, or the final one) still lists every file an
 * earlier poll listed, at the same place; returns how many it lists beyond them. A server that
 * changed earlier pages would have a file land under another file's key: refused, naming where.
 */
export function filesBeyondListing(
  listing: PartialListing | undefined,
  manifest: CompletionManifest,
): number {
  if (!listing) return manifest.files.length;
  const fail = (what: string) =>
    new InvalidManifestError(
      `the manifest changed files it had listed while the export ran (allowPartialManifests): ${what}; a listed file must keep its place (IG, "Response - In-Progress Status")`,
    );
  if (manifest.transactionTime !== listing.transactionTime) {
    throw fail(`transactionTime was ${listing.transactionTime}, now ${manifest.transactionTime}`);
  }
  if (manifest.files.length < listing.files.length) {
    throw fail(`${listing.files.length} files were listed, now ${manifest.files.length}`);
  }
  listing.files.forEach((before, index) => {
    const now = listedFile(manifest.files[index]!);
    if (
      now.kind !== before.kind ||
      now.type !== before.type ||
      now.count !== before.count ||
      now.organizedBy !== before.organizedBy
    ) {
      throw fail(`file ${index} was ${describe(before)}, now ${describe(now)}`);
    }
  });
  return manifest.files.length - listing.files.length;
}

const describe = (file: ListedFile) =>
  `${file.kind} ${file.organizedBy ? `organized by ${file.organizedBy}` : file.type}${file.count === undefined ? '' : ` (count ${file.count})`}`;
