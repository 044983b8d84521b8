/**
 * Checks that one NDJSON line is one JSON object whose top-level
 * `resourceType` is the expected one, without building the object.
 *
 * Why not JSON.parse: parsing allocates every string, number and object of
 * the resource only to throw them away, and dominates the cost of a
 * download (scripts/bench/framer.ts measures both). This scanner walks the
 * bytes once, validates the full JSON grammar (RFC 8259, exactly what
 * JSON.parse accepts), and remembers where the last top-level
 * `resourceType` string is, since JSON.parse keeps the last duplicate key
 * too. Escaped keys or values at the top level (legal but unheard of in FHIR)
 * are decoded with JSON.parse so the answer stays the same as JSON.parse's.
 *
 * Asked for, it also finds the line's top-level `id` string, in a second
 * pass over a line already known to be valid: the check itself stays exactly
 * as fast when nobody asks (folding the id into the first pass cost the
 * default check 4 to 15% in scripts/bench, by what V8 would still inline).
 *
 * UTF-8 validity is not checked here; the framer checks it for whole runs of
 * lines at once, which is much cheaper.
 */

/** Why a line was rejected. */
export type LineProblem =
  | { readonly kind: 'syntax'; readonly column: number }
  | { readonly kind: 'end-of-line' }
  | { readonly kind: 'not-an-object'; readonly found: 'array' | 'string' | 'number' | 'boolean' | 'null' }
  | { readonly kind: 'no-resource-type' }
  | { readonly kind: 'resource-type-not-a-string' }
  | { readonly kind: 'wrong-resource-type'; readonly found: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;

const RESOURCE_TYPE = Buffer.from('resourceType', 'latin1');
const LOWER_I = 0x69;
const LOWER_D = 0x64;

/** 1 for the bytes allowed after a backslash (other than `u`). */
const SIMPLE_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPE[c.charCodeAt(0)] = 1;

/** 1 for hexadecimal digits. */
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEX[c.charCodeAt(0)] = 1;

const IN_OBJECT = 1;
const IN_ARRAY = 2;

/** Container stack, grown on demand and shared: the scan never yields. */
let stack = new Uint8Array(64);

/** Set by scanString: whether the string just scanned contained a backslash escape. */
let sawEscape = false;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Scans a string body starting after its opening quote. Returns the index
 * after the closing quote, or `~index` of the offending byte.
 */
function scanString(b: Uint8Array, p: number, end: number): number {
  sawEscape = false;
  while (p < end) {
    const c = b[p]!;
    if (c === QUOTE) return p + 1;
    if (c === BACKSLASH) {
      sawEscape = true;
      if (p + 1 >= end) return ~end;
      const e = b[p + 1]!;
      if (SIMPLE_ESCAPE[e] === 1) {
        p += 2;
        continue;
      }
      if (e !== 0x75) return ~(p + 1);
      for (let i = p + 2; i < p + 6; i++) {
        if (i >= end) return ~end;
        if (HEX[b[i]!] !== 1) return ~i;
      }
      p += 6;
      continue;
    }
    // Raw control characters (including a stray CR) are not allowed inside JSON strings.
    if (c < 0x20) return ~p;
    p++;
  }
  return ~end;
}

function scanDigits(b: Uint8Array, p: number, end: number): number {
  while (p < end) {
    const c = b[p]!;
    if (c < ZERO || c > NINE) break;
    p++;
  }
  return p;
}

/** Scans a number; returns the index after it or `~index` of the offending byte. */
function scanNumber(b: Uint8Array, p: number, end: number): number {
  if (b[p] === MINUS) p++;
  if (p >= end) return ~end;
  const first = b[p]!;
  if (first === ZERO) p++;
  else if (first > ZERO && first <= NINE) p = scanDigits(b, p + 1, end);
  else return ~p;
  if (p < end && b[p] === DOT) {
    const digits = p + 1;
    p = scanDigits(b, digits, end);
    if (p === digits) return ~p;
  }
  if (p < end && (b[p] === 0x65 || b[p] === 0x45)) {
    p++;
    if (p < end && (b[p] === PLUS || b[p] === MINUS)) p++;
    const digits = p;
    p = scanDigits(b, digits, end);
    if (p === digits) return ~p;
  }
  return p;
}

function scanLiteral(b: Uint8Array, p: number, end: number, literal: string): number {
  for (let i = 0; i < literal.length; i++, p++) {
    if (p >= end) return ~end;
    if (b[p] !== literal.charCodeAt(i)) return ~p;
  }
  return p;
}

function equalsBytes(b: Uint8Array, start: number, end: number, expected: Uint8Array): boolean {
  if (end - start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (b[start + i] !== expected[i]) return false;
  return true;
}

function decodeJsonString(b: Uint8Array, openQuote: number, closeQuoteEnd: number): string {
  return JSON.parse(
    Buffer.from(b.buffer, b.byteOffset + openQuote, closeQuoteEnd - openQuote).toString('utf8'),
  );
}

/**
 * Where the top-level `id` string of the line just checked is, filled in
 * only for callers that ask. `start` is -1 when the line has no string id: none at all, or
 * the last `id` key holds another kind of value (as JSON.parse would keep it).
 */
export interface IdSpan {
  start: number;
  /** Index of the closing quote. */
  end: number;
  /** The raw bytes hold a backslash escape: decode them before use. */
  escaped: boolean;
}

export function emptyIdSpan(): IdSpan {
  return { start: -1, end: -1, escaped: false };
}

/**
 * The UTF-8 bytes of the id a span points at: a view of `b` when the id is
 * written plainly (the framer has checked the line is UTF-8), else the
 * decoded id re-encoded. Undefined when the line had no string id.
 */
export function idBytes(b: Uint8Array, span: IdSpan): Uint8Array | undefined {
  if (span.start < 0) return undefined;
  if (!span.escaped) return b.subarray(span.start, span.end);
  return Buffer.from(decodeJsonString(b, span.start - 1, span.end + 1), 'utf8');
}

/** A compiled expectation, so the per-line check compares bytes instead of strings. */
export interface ResourceTypeExpectation {
  readonly name: string;
  readonly bytes: Uint8Array;
  /**
   * A file of several types (organized by patient): a line may have any of these types, or any
   * FHIR type name when the set is empty; `name` then only describes them in messages.
   */
  readonly anyOf?: ReadonlySet<string>;
}

export function expectResourceType(name: string): ResourceTypeExpectation {
  return { name, bytes: Buffer.from(name, 'utf8') };
}

/** Lines of several types: any of `types` (none = any FHIR type name). */
export function expectResourceTypes(types: readonly string[]): ResourceTypeExpectation {
  const name = types.length === 0 ? 'any resource type' : `one of ${types.join(', ')}`;
  return { name, bytes: new Uint8Array(0), anyOf: new Set(types) };
}

/** Set by checkResourceLine for a mixed expectation: the valid line's resourceType. */
export interface FoundType {
  name: string;
}

/** A resourceType we can safely echo in an error: a FHIR type name, never free text (PHI). */
const TYPE_NAME = /^[A-Z][A-Za-z0-9]{0,63}$/;

/**
 * Returns undefined when `b[start, end)` is exactly one JSON object with
 * `"resourceType": expected.name` at its top level, else the problem. With
 * `id`, also says where the line's top-level `id` string is (see IdSpan).
 */
export function checkResourceLine(
  b: Uint8Array,
  start: number,
  end: number,
  expected: ResourceTypeExpectation,
  id?: IdSpan,
  found?: FoundType,
): LineProblem | undefined {
  const problem = checkLine(b, start, end, expected, found);
  if (id !== undefined && problem === undefined) findTopLevelId(b, start, end, id);
  return problem;
}

function checkLine(
  b: Uint8Array,
  start: number,
  end: number,
  expected: ResourceTypeExpectation,
  foundType?: FoundType,
): LineProblem | undefined {
  let p = start;
  let depth = 0;
  let firstKind = 0;
  // Where the last top-level "resourceType" value is: -1 none, -2 not a string.
  let typeStart = -1;
  let typeEnd = -1;
  let typeEscaped = false;
  let valueIsResourceType = false;

  // The scanner alternates between two states: expecting a value, and having
  // just finished one (expecting a separator, a closer, or the end).
  let expectValue = true;
  for (;;) {
    while (p < end && isSpace(b[p]!)) p++;
    if (expectValue) {
      if (p >= end) return { kind: 'end-of-line' };
      const c = b[p]!;
      if (depth === 0) firstKind = c;
      if (c === QUOTE) {
        const after = scanString(b, p + 1, end);
        if (after < 0) return syntaxOrEnd(~after, start, end);
        if (valueIsResourceType) {
          typeStart = p + 1;
          typeEnd = after - 1;
          typeEscaped = sawEscape;
        }
        p = after;
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (valueIsResourceType) typeStart = -2;
        if (depth === stack.length) {
          const grown = new Uint8Array(stack.length * 2);
          grown.set(stack);
          stack = grown;
        }
        p++;
        while (p < end && isSpace(b[p]!)) p++;
        if (p < end && b[p] === (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
          p++;
        } else {
          stack[depth++] = c === OPEN_BRACE ? IN_OBJECT : IN_ARRAY;
          if (c === OPEN_BRACE) {
            const next = scanKey(b, p, end, depth === 1);
            if (next < 0) return syntaxOrEnd(~next, start, end);
            p = next;
            valueIsResourceType = keyIsResourceType;
          } else {
            valueIsResourceType = false;
          }
          continue;
        }
      } else {
        if (valueIsResourceType) typeStart = -2;
        let after: number;
        if (c === MINUS || (c >= ZERO && c <= NINE)) after = scanNumber(b, p, end);
        else if (c === 0x74) after = scanLiteral(b, p, end, 'true');
        else if (c === 0x66) after = scanLiteral(b, p, end, 'false');
        else if (c === 0x6e) after = scanLiteral(b, p, end, 'null');
        else return syntaxOrEnd(p, start, end);
        if (after < 0) return syntaxOrEnd(~after, start, end);
        p = after;
      }
      valueIsResourceType = false;
      expectValue = false;
      continue;
    }
    // A value just ended.
    if (depth === 0) {
      if (p < end) return syntaxOrEnd(p, start, end);
      break;
    }
    if (p >= end) return { kind: 'end-of-line' };
    const c = b[p]!;
    const container = stack[depth - 1];
    if (c === COMMA) {
      p++;
      if (container === IN_OBJECT) {
        const next = scanKey(b, p, end, depth === 1);
        if (next < 0) return syntaxOrEnd(~next, start, end);
        p = next;
        valueIsResourceType = keyIsResourceType;
      }
      expectValue = true;
    } else if (
      (c === CLOSE_BRACE && container === IN_OBJECT) ||
      (c === CLOSE_BRACKET && container === IN_ARRAY)
    ) {
      p++;
      depth--;
    } else {
      return syntaxOrEnd(p, start, end);
    }
  }

  if (firstKind !== OPEN_BRACE) {
    return {
      kind: 'not-an-object',
      found:
        firstKind === OPEN_BRACKET
          ? 'array'
          : firstKind === QUOTE
            ? 'string'
            : firstKind === 0x74 || firstKind === 0x66
              ? 'boolean'
              : firstKind === 0x6e
                ? 'null'
                : 'number',
    };
  }
  if (typeStart === -1) return { kind: 'no-resource-type' };
  if (typeStart === -2) return { kind: 'resource-type-not-a-string' };
  if (expected.anyOf === undefined && !typeEscaped && equalsBytes(b, typeStart, typeEnd, expected.bytes))
    return undefined;
  const found = typeEscaped
    ? decodeJsonString(b, typeStart - 1, typeEnd + 1)
    : Buffer.from(b.buffer, b.byteOffset + typeStart, typeEnd - typeStart).toString('utf8');
  if (expected.anyOf !== undefined) {
    if (TYPE_NAME.test(found) && (expected.anyOf.size === 0 || expected.anyOf.has(found))) {
      if (foundType) foundType.name = found;
      return undefined;
    }
  } else if (found === expected.name) return undefined;
  return { kind: 'wrong-resource-type', found: TYPE_NAME.test(found) ? found : '(not a FHIR type name)' };
}

/** Set by scanKey: whether the key just scanned is `resourceType` at the top level. */
let keyIsResourceType = false;

/**
 * Scans `"key" :` (with surrounding whitespace) and leaves `p` on the value.
 * Returns `~index` of the offending byte on error.
 */
function scanKey(b: Uint8Array, p: number, end: number, topLevel: boolean): number {
  keyIsResourceType = false;
  while (p < end && isSpace(b[p]!)) p++;
  if (p >= end) return ~end;
  if (b[p] !== QUOTE) return ~p;
  const keyStart = p + 1;
  const after = scanString(b, keyStart, end);
  if (after < 0) return after;
  if (topLevel) {
    keyIsResourceType = sawEscape
      ? decodeJsonString(b, p, after) === 'resourceType'
      : equalsBytes(b, keyStart, after - 1, RESOURCE_TYPE);
  }
  p = after;
  while (p < end && isSpace(b[p]!)) p++;
  if (p >= end) return ~end;
  if (b[p] !== COLON) return ~p;
  return p + 1;
}

/**
 * Finds the last top-level `id` of a line checkResourceLine has accepted:
 * the grammar is known good, so values are skipped, not checked.
 */
function findTopLevelId(b: Uint8Array, start: number, end: number, id: IdSpan): void {
  id.start = -1;
  id.end = -1;
  id.escaped = false;
  let p = start;
  while (b[p] !== OPEN_BRACE) p++;
  p++;
  for (;;) {
    while (isSpace(b[p]!)) p++;
    if (b[p] === CLOSE_BRACE) return;
    const keyStart = p + 1;
    const keyAfter = scanString(b, keyStart, end);
    const isId = sawEscape
      ? decodeJsonString(b, p, keyAfter) === 'id'
      : keyAfter - keyStart === 3 && b[keyStart] === LOWER_I && b[keyStart + 1] === LOWER_D;
    p = keyAfter;
    while (b[p] !== COLON) p++;
    p++;
    while (isSpace(b[p]!)) p++;
    const valueStart = p;
    p = skipValue(b, p, end);
    if (isId) {
      // The last one counts, as with JSON.parse: a later non-string id means no id.
      const isString = b[valueStart] === QUOTE;
      id.start = isString ? valueStart + 1 : -1;
      id.end = isString ? p - 1 : -1;
      id.escaped = isString && sawEscape;
    }
    while (isSpace(b[p]!)) p++;
    if (b[p] !== COMMA) return;
    p++;
  }
}

/** The index after the valid JSON value at `p`; after a string, `sawEscape` is that string's. */
function skipValue(b: Uint8Array, p: number, end: number): number {
  const c = b[p];
  if (c === QUOTE) return scanString(b, p + 1, end);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    while (p < end) {
      const d = b[p]!;
      if (d === QUOTE) {
        p = scanString(b, p + 1, end);
        continue;
      }
      if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if ((d === CLOSE_BRACE || d === CLOSE_BRACKET) && --depth === 0) return p + 1;
      p++;
    }
    return p;
  }
  while (p < end) {
    const d = b[p]!;
    if (d === COMMA || d === CLOSE_BRACE || isSpace(d)) break;
    p++;
  }
  return p;
}

function syntaxOrEnd(at: number, start: number, end: number): LineProblem {
  return at >= end ? { kind: 'end-of-line' } : { kind: 'syntax', column: at - start + 1 };
}

/** Words for an error message; never quotes the line (it is PHI). */
export function describeLineProblem(problem: LineProblem, expected: string): string {
  switch (problem.kind) {
    case 'syntax':
      return `not valid JSON (unexpected byte at column ${problem.column})`;
    case 'end-of-line':
      return 'not valid JSON (the line ends inside a value)';
    case 'not-an-object':
      return `a JSON ${problem.found}, not an object`;
    case 'no-resource-type':
      return 'no top-level resourceType';
    case 'resource-type-not-a-string':
      return 'resourceType is not a string';
    case 'wrong-resource-type':
      return `resourceType is ${problem.found}, expected ${expected}`;
  }
}
