import { ConfigurationError } from '../errors.js';
import { formatSpan } from './validate.js';

/**
 * The daily delta's starting point: the `_since` of the next `since: "auto"`
 * export. It only ever moves forward, only after a fully verified export of
 * the source's default scope, and never past now.
 */
export type WatermarkDecision =
  | {
      readonly advance: true;
      /** The new watermark: the export's transactionTime, or now when that is later. */
      readonly transactionTime: string;
      readonly reason: string;
    }
  | { readonly advance: false; readonly reason: string };

export function decideWatermark(options: {
  /** False for a window with `until` or a narrower scope. */
  readonly advancesWatermark: boolean;
  /** The stored watermark's transactionTime, if any. */
  readonly current: string | undefined;
  readonly transactionTime: string;
  readonly now: Date;
}): WatermarkDecision {
  if (!options.advancesWatermark) {
    return {
      advance: false,
      reason: 'a window with until or a narrower scope does not move the daily delta',
    };
  }
  // A transactionTime within the allowed clock skew may still be ahead of now; a watermark in
  // the future would make the next delta skip what changes before then. Now is a safe _since:
  // the changes between it and the transactionTime come again, as duplicates, never as gaps.
  const ahead = Date.parse(options.transactionTime) > options.now.getTime();
  const value = ahead ? options.now.toISOString() : options.transactionTime;
  if (options.current !== undefined && Date.parse(options.current) >= Date.parse(value)) {
    return {
      advance: false,
      reason: `the stored watermark ${options.current} is not older; it never moves backwards`,
    };
  }
  return {
    advance: true,
    transactionTime: value,
    reason: ahead
      ? `fully verified export of the source default scope; its transactionTime ${options.transactionTime} is ahead of this clock, so the watermark stops at now`
      : 'fully verified export of the source default scope',
  };
}

/**
 * A stored watermark in the future (written by a version that trusted any
 * transactionTime, or by hand) would make every `since: "auto"` export ask
 * for changes after it and get none, silently. Refuse it with the way out.
 */
export function checkStoredWatermark(options: {
  readonly transactionTime: string;
  readonly where: string;
  readonly now: Date;
  readonly maxClockSkewSeconds: number;
}): void {
  const ahead = Date.parse(options.transactionTime) - options.now.getTime();
  if (Number.isNaN(ahead)) {
    throw new ConfigurationError(
      `the stored watermark ${options.where} does not hold an instant as its transactionTime; correct it to the last transactionTime you trust, or delete it for a full export`,
    );
  }
  if (ahead <= options.maxClockSkewSeconds * 1000) return;
  throw new ConfigurationError(
    `the stored watermark ${options.where} holds transactionTime ${options.transactionTime}, ${formatSpan(ahead)} ahead of this client's clock (${options.now.toISOString()}): ` +
      'with since=auto every export would ask for changes after it and get none. Set it to the last transactionTime you trust ' +
      '(or delete it for a full export), or start this export with an explicit since',
  );
}
