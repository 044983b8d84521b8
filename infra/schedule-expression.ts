/**
 * EventBridge Scheduler expressions, checked at synth time: a typo in a cron
 * field would otherwise surface only when CloudFormation rejects the stack,
 * or worse, as a schedule that fires at an unintended time.
 *
 * Pure functions; the construct turns a returned problem into an Error that
 * names the source.
 */

/** `Field` bounds and the names EventBridge accepts in place of numbers. */
interface CronField {
  readonly name: string;
  readonly min: number;
  readonly max: number;
  readonly names?: readonly string[];
  /** Characters beyond `, - * /` that this field accepts. */
  readonly extra: 'none' | 'day-of-month' | 'day-of-week';
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];
const WEEKDAYS = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

const FIELDS: readonly CronField[] = [
  { name: 'minutes', min: 0, max: 59, extra: 'none' },
  { name: 'hours', min: 0, max: 23, extra: 'none' },
  { name: 'day-of-month', min: 1, max: 31, extra: 'day-of-month' },
  { name: 'month', min: 1, max: 12, names: MONTHS, extra: 'none' },
  { name: 'day-of-week', min: 1, max: 7, names: WEEKDAYS, extra: 'day-of-week' },
  { name: 'year', min: 1970, max: 2199, extra: 'none' },
];

function fieldValue(token: string, field: CronField): number | undefined {
  if (/^\d+$/.test(token)) {
    const value = Number(token);
    return value >= field.min && value <= field.max ? value : undefined;
  }
  const index = field.names?.indexOf(token.toUpperCase()) ?? -1;
  return index >= 0 ? index + field.min : undefined;
}

/** One comma-separated item of a field: `*`, `v`, `a-b`, each optionally `/step`, or a special form. */
function checkItem(item: string, field: CronField): string | undefined {
  if (field.extra === 'day-of-month' && /^(L|LW|L-\d{1,2}|\d{1,2}W)$/.test(item)) {
    const day = Number(item.replace(/\D/g, '') || '1');
    return day >= 1 && day <= 31 ? undefined : `${field.name} ${item} is out of range 1-31`;
  }
  if (field.extra === 'day-of-week') {
    const nth = /^([A-Za-z]{3}|\d)#([1-5])$/.exec(item);
    if (nth)
      return fieldValue(nth[1]!, field) === undefined ? `${field.name} ${item} names no weekday` : undefined;
    const last = /^([A-Za-z]{3}|\d)?L$/.exec(item);
    if (last)
      return last[1] !== undefined && fieldValue(last[1], field) === undefined
        ? `${field.name} ${item} names no weekday`
        : undefined;
  }
  const [base, step, ...rest] = item.split('/');
  if (rest.length > 0 || base === undefined || base === '')
    return `${field.name} item "${item}" is malformed`;
  if (step !== undefined && !/^[1-9]\d*$/.test(step))
    return `${field.name} step "${step}" must be a positive integer`;
  if (base === '*') return undefined;
  const bounds = base.split('-');
  if (bounds.length > 2) return `${field.name} range "${base}" is malformed`;
  const values = bounds.map((bound) => fieldValue(bound, field));
  if (values.some((value) => value === undefined)) {
    const allowed = field.names ? ` or ${field.names[0]}-${field.names.at(-1)}` : '';
    return `${field.name} "${base}" is outside ${field.min}-${field.max}${allowed}`;
  }
  if (values.length === 2 && values[0]! > values[1]!) return `${field.name} range "${base}" runs backwards`;
  return undefined;
}

/**
 * Why an EventBridge Scheduler cron body (the part inside `cron(…)`) is
 * invalid, or `undefined` when it is valid. Six fields: minutes hours
 * day-of-month month day-of-week year; exactly one of the two day fields is
 * `?` (EventBridge refuses both set, and both `?`).
 */
export function cronProblem(body: string): string | undefined {
  const fields = body.trim().split(/\s+/);
  if (fields.length !== 6) {
    return `cron needs 6 fields (minutes hours day-of-month month day-of-week year), got ${fields.length}`;
  }
  const dayOfMonth = fields[2]!;
  const dayOfWeek = fields[4]!;
  if ((dayOfMonth === '?') === (dayOfWeek === '?')) {
    return 'cron needs ? in exactly one of day-of-month and day-of-week (e.g. "0 2 * * ? *")';
  }
  for (const [index, field] of FIELDS.entries()) {
    const value = fields[index]!;
    if (value === '?') {
      if (field.extra === 'none') return `${field.name} cannot be ?`;
      continue;
    }
    for (const item of value.split(',')) {
      const problem = checkItem(item, field);
      if (problem) return problem;
    }
  }
  return undefined;
}

/** Why a `rate(…)` body is invalid, or `undefined`. */
export function rateProblem(body: string): string | undefined {
  const match = /^\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*$/.exec(body);
  if (!match) return 'rate must look like rate(1 day) or rate(12 hours)';
  const value = Number(match[1]);
  if (value < 1) return 'rate value must be at least 1';
  const plural = match[2]!.endsWith('s');
  if (value === 1 && plural) return `rate(1 ${match[2]}) must use the singular unit`;
  if (value > 1 && !plural) return `rate(${value} ${match[2]}) must use the plural unit`;
  return undefined;
}

/** Why a schedule expression is invalid, or `undefined`: `cron(…)` or `rate(…)`. */
export function scheduleExpressionProblem(expression: string): string | undefined {
  const match = /^(cron|rate)\((.*)\)$/.exec(expression.trim());
  if (!match) return 'expected cron(minutes hours day-of-month month day-of-week year) or rate(value unit)';
  return match[1] === 'cron' ? cronProblem(match[2]!) : rateProblem(match[2]!);
}

/** Whether the runtime knows this IANA time zone (the names EventBridge Scheduler accepts). */
export function isKnownTimeZone(timeZone: string): boolean {
  if (timeZone.trim() === '') return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}
