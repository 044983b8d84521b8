import { describe, expect, it } from 'vitest';
import { isKnownTimeZone, scheduleExpressionProblem } from '../../infra/schedule-expression.js';

describe('scheduleExpressionProblem', () => {
  it.each([
    'cron(0 2 * * ? *)',
    'cron(15 10 ? * 6L 2026-2030)',
    'cron(0/15 * * * ? *)',
    'cron(0 8 1,15 * ? *)',
    'cron(0 18 ? * MON-FRI *)',
    'cron(30 1 L * ? *)',
    'cron(0 3 15W * ? *)',
    'cron(0 4 ? JAN-MAR 2#1 *)',
    'rate(1 day)',
    'rate(12 hours)',
  ])('accepts %s', (expression) => {
    expect(scheduleExpressionProblem(expression)).toBeUndefined();
  });

  it.each([
    ['cron(0 2 * * *)', 'cron needs 6 fields (minutes hours day-of-month month day-of-week year), got 5'],
    ['cron(0 2 * * * *)', 'cron needs ? in exactly one of day-of-month and day-of-week (e.g. "0 2 * * ? *")'],
    ['cron(0 2 ? * ? *)', 'cron needs ? in exactly one of day-of-month and day-of-week (e.g. "0 2 * * ? *")'],
    ['cron(60 2 * * ? *)', 'minutes "60" is outside 0-59'],
    ['cron(0 2 32 * ? *)', 'day-of-month "32" is outside 1-31'],
    ['cron(0 2 * 13 ? *)', 'month "13" is outside 1-12 or JAN-DEC'],
    ['cron(0 2 ? * FUN *)', 'day-of-week "FUN" is outside 1-7 or SUN-SAT'],
    ['cron(0 2 * * ? 1969)', 'year "1969" is outside 1970-2199'],
    ['cron(0 5-2 * * ? *)', 'hours range "5-2" runs backwards'],
    ['cron(0/0 2 * * ? *)', 'minutes step "0" must be a positive integer'],
    ['cron(? 2 * * ? *)', 'minutes cannot be ?'],
    ['rate(1 days)', 'rate(1 days) must use the singular unit'],
    ['rate(2 day)', 'rate(2 day) must use the plural unit'],
    ['rate(5 weeks)', 'rate must look like rate(1 day) or rate(12 hours)'],
    [
      'at(2026-01-01T00:00:00)',
      'expected cron(minutes hours day-of-month month day-of-week year) or rate(value unit)',
    ],
  ])('rejects %s: %s', (expression, problem) => {
    expect(scheduleExpressionProblem(expression)).toBe(problem);
  });
});

describe('isKnownTimeZone', () => {
  it.each([
    ['America/Chicago', true],
    ['UTC', true],
    ['Europe/Berlin', true],
    ['America/Springfield', false],
    ['', false],
  ])('%s → %s', (timeZone, known) => {
    expect(isKnownTimeZone(timeZone)).toBe(known);
  });
});
