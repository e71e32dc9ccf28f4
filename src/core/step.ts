// The optional training step a Score request may carry (ScoreRequest.step, "step" in POST /v1/score): the
// trainer's global step, which the monitor stores with the call's history point so the page can plot by step.
import { MechRewardError } from '../errors.js';

/**
 * A non-negative safe integer, or undefined when the client sent none. gRPC gives the int64 as a decimal
 * string (longs: String) or leaves it out; JSON and msgpack give a number.
 */
export function parseStep(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  const n = typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : typeof value === 'number' || typeof value === 'bigint' ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `step: must be a whole number >= 0 (the trainer's global step), got ${JSON.stringify(typeof value === 'bigint' ? value.toString() : value)}`);
  }
  return n;
}
