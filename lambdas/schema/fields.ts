import { z } from 'zod';
import { describe } from '../core/validate.js';
import { ConfigurationError } from '../errors.js';

/**
 * Field builders for the zod schemas, each carrying the message a user reads:
 * the field's path, then what was expected and what was found. Values are
 * echoed only for numbers and short enumerations, never for free text: a
 * source file sits next to credentials, and a secret's members are secrets.
 */

const gotNumber = (value: unknown) => (typeof value === 'number' ? String(value) : describe(value));
const gotShort = (value: unknown, max = 40) =>
  typeof value === 'string' && value.length <= max ? JSON.stringify(value) : describe(value);

const nonEmptyText = () =>
  z
    .string({
      error: (issue) =>
        issue.input === undefined
          ? 'is required: a non-empty string'
          : `must be a non-empty string (got ${describe(issue.input)})`,
    })
    // min(1) for the JSON Schema; the refinement also refuses white space only.
    .min(1, { error: (issue) => `must be a non-empty string (got ${describe(issue.input)})` })
    .refine((value) => value.trim() !== '', {
      error: (issue) => `must be a non-empty string (got ${describe(issue.input)})`,
    });

/** A non-empty string (not only white space). */
export const text = (description?: string) => {
  const schema = nonEmptyText();
  return description ? schema.meta({ description }) : schema;
};

/** A string that must match a pattern; `expected` says what it should look like. */
export const patterned = (regex: RegExp, expected: string, description?: string) => {
  const schema = z
    .string({
      error: (issue) =>
        issue.input === undefined
          ? `is required: ${expected}`
          : `must be ${expected} (got ${describe(issue.input)})`,
    })
    .regex(regex, { error: () => `must be ${expected}` });
  return description ? schema.meta({ description }) : schema;
};

/** An integer in a range. */
export const integer = (min: number, max: number, description?: string) => {
  const message = (issue: { input?: unknown }) =>
    `must be an integer from ${min} to ${max} (got ${gotNumber(issue.input)})`;
  const schema = z.int({ error: message }).min(min, { error: message }).max(max, { error: message });
  return description ? schema.meta({ description }) : schema;
};

export const flag = (description?: string) => {
  const schema = z.boolean({ error: (issue) => `must be true or false (got ${describe(issue.input)})` });
  return description ? schema.meta({ description }) : schema;
};

export const oneOf = <const T extends readonly [string, ...string[]]>(values: T, description?: string) => {
  const schema = z.enum(values, {
    error: (issue) => `must be one of ${values.join(', ')} (got ${gotShort(issue.input)})`,
  });
  return description ? schema.meta({ description }) : schema;
};

/** An array of non-empty strings, each optionally matching a pattern. */
export const textList = (pattern?: { regex: RegExp; expected: string }, description?: string) => {
  const item = pattern
    ? z
        .string({ error: (issue) => `must be a non-empty string (got ${describe(issue.input)})` })
        .regex(pattern.regex, { error: () => `must be ${pattern.expected}` })
    : nonEmptyText();
  const schema = z.array(item, {
    error: (issue) => `must be an array of strings (got ${describe(issue.input)})`,
  });
  return description ? schema.meta({ description }) : schema;
};

/**
 * An object that refuses keys it does not know, so a misspelled `tokenURL`
 * fails loudly instead of being ignored. `$schema` (an editor's hint) and
 * `$comment` are always allowed.
 */
export const strictObject = <S extends z.core.$ZodLooseShape>(
  shape: S,
  description?: string,
  /** A sentence added when some unknown keys are known mistakes (credentials in settings). */
  unknownKeyHint?: (keys: readonly string[]) => string | undefined,
) => {
  const keys = Object.keys(shape);
  const schema = z.strictObject(
    { ...shape, $schema: z.string().optional(), $comment: z.string().optional() },
    {
      error: (issue) => {
        if (issue.code === 'unrecognized_keys') {
          const hint = unknownKeyHint?.(issue.keys);
          return `has unknown key(s) ${issue.keys.join(', ')}; ${hint ? `${hint}; ` : ''}expected only ${keys.join(', ')}`;
        }
        return issue.input === undefined
          ? 'is required: a JSON object'
          : `must be a JSON object (got ${describe(issue.input)})`;
      },
    },
  );
  return description ? schema.meta({ description }) : schema;
};

/** `a.b[2].c` from a zod issue path. */
function joinPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : `.${String(part)}`;
  return out;
}

/** The first problem of a failed parse, as a sentence that starts with the field's path. */
export function firstProblem(error: z.ZodError, root: string): string {
  const issue = error.issues[0];
  if (!issue) return `${root} is invalid`;
  // A union reports why each branch failed; the first branch's reason is the useful one.
  if (issue.code === 'invalid_union' && issue.errors[0]?.[0]) {
    const inner = issue.errors[0][0];
    return `${joinPath(root, [...issue.path, ...inner.path])} ${inner.message}`;
  }
  return `${joinPath(root, issue.path)} ${issue.message}`;
}

/**
 * Parses `raw` with a schema, throwing the caller's error type (ConfigurationError
 * by default) with the first problem's path and what was expected.
 */
export function parseWith<S extends z.ZodType>(
  schema: S,
  raw: unknown,
  root: string,
  fail: (message: string) => Error = (message) => new ConfigurationError(message),
): z.output<S> {
  const result = schema.safeParse(raw);
  if (!result.success) throw fail(firstProblem(result.error, root));
  return result.data;
}
