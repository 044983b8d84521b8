/**
 * Finds byte sequences of a fixed width that occur both in resource content
 * and in a place that must hold none of it (logs, execution history, state).
 * Content hidden in base64 or hex (as a hash state's buffered tail was) is
 * decoded and searched too.
 *
 * Every window of the haystack is indexed by a 52-bit rolling hash (two
 * 26-bit polynomial hashes side by side), then every window of the content
 * is looked up; a hit is confirmed byte for byte before it is reported.
 */

const P1 = 67_108_859; // primes below 2^26: products stay exact in a double
const P2 = 67_108_837;
const B1 = 257;
const B2 = 263;

export interface SharedWindow {
  /** Where in the haystack (as labelled by the caller) the window was found. */
  readonly where: string;
  /** The window, as text, for the failure message. */
  readonly text: string;
}

export interface Place {
  readonly where: string;
  readonly text: string;
}

/** The place's bytes, plus every base64, base64url or hex token in it decoded. */
export function searchableForms(place: Place): { where: string; bytes: Buffer }[] {
  const forms = [{ where: place.where, bytes: Buffer.from(place.text, 'utf8') }];
  for (const token of place.text.match(/[A-Za-z0-9+/_-]{24,}={0,2}/g) ?? []) {
    const base64 = Buffer.from(token.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    forms.push({ where: `${place.where} (base64 ${token.slice(0, 12)}… decoded)`, bytes: base64 });
    if (/^[0-9a-fA-F]+$/.test(token) && token.length % 2 === 0) {
      forms.push({
        where: `${place.where} (hex ${token.slice(0, 12)}… decoded)`,
        bytes: Buffer.from(token, 'hex'),
      });
    }
  }
  return forms;
}

function windowPower(width: number, base: number, prime: number): number {
  let power = 1;
  for (let i = 1; i < width; i++) power = (power * base) % prime;
  return power;
}

/** Calls `visit(hash, end)` for every window of `width` bytes of `bytes` (`end` exclusive). */
function forEachWindow(
  bytes: Uint8Array,
  width: number,
  visit: (hash: number, end: number) => boolean | undefined,
) {
  if (bytes.length < width) return;
  const top1 = windowPower(width, B1, P1);
  const top2 = windowPower(width, B2, P2);
  let h1 = 0;
  let h2 = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (i >= width) {
      const out = bytes[i - width]!;
      h1 = (h1 - ((out * top1) % P1) + P1) % P1;
      h2 = (h2 - ((out * top2) % P2) + P2) % P2;
    }
    h1 = (h1 * B1 + bytes[i]!) % P1;
    h2 = (h2 * B2 + bytes[i]!) % P2;
    if (i >= width - 1 && visit(h1 * 2 ** 26 + h2, i + 1) === true) return;
  }
}

/**
 * The windows of `width` bytes that some content line shares with some place.
 * Reports at most one window per place, and at most `limit` in all.
 */
export function findSharedWindows(
  content: Iterable<Uint8Array>,
  places: readonly Place[],
  width = 16,
  limit = 10,
): SharedWindow[] {
  const forms = places.flatMap(searchableForms);
  const index = new Map<number, number>();
  forms.forEach((form, formIndex) => {
    forEachWindow(form.bytes, width, (hash) => {
      if (!index.has(hash)) index.set(hash, formIndex);
      return undefined;
    });
  });
  const found: SharedWindow[] = [];
  const reported = new Set<number>();
  for (const line of content) {
    forEachWindow(line, width, (hash, end) => {
      const formIndex = index.get(hash);
      if (formIndex === undefined || reported.has(formIndex)) return undefined;
      const window = Buffer.from(line.subarray(end - width, end));
      // Confirm: a hash match is only a candidate.
      const holder = forms.findIndex((form) => form.bytes.includes(window));
      if (holder < 0) return undefined;
      reported.add(formIndex);
      found.push({ where: forms[holder]!.where, text: window.toString('latin1') });
      return found.length >= limit;
    });
    if (found.length >= limit) break;
  }
  return found;
}
