// The dual verifier (pure): an independent linear probe checks the sign of every rewarded response token.
//   - A token disagrees when its reward is non-zero and sign(r_t) != sign(probe . x_t + b).
//   - A response's disagreement rate = disagreeing tokens / response tokens with r_t != 0 (0 when none).
//   - token_gate: disagreeing tokens get r_t = 0 (the original G3 recipe).
//   - batch_downweight: the request's rate (disagreeing / non-zero tokens over all its responses) above the
//     threshold scales every reward of the request by `factor`.
import type { VerifierSpec } from '../packs/schema.js';

export interface Disagreement {
  /** Response tokens with r_t != 0. */
  readonly considered: number;
  readonly disagreeing: number;
}

export function disagreementRate(d: Disagreement): number {
  return d.considered > 0 ? d.disagreeing / d.considered : 0;
}

/**
 * Counts disagreeing tokens among `rewards[from, to)` against the verifier's logits (same indexing), and
 * zeroes them when `gate`.
 */
export function checkTokens(rewards: Float32Array, logits: ArrayLike<number>, from: number, to: number, gate: boolean): Disagreement {
  let considered = 0;
  let disagreeing = 0;
  for (let t = from; t < to; t++) {
    const r = rewards[t]!;
    if (r === 0) continue;
    considered++;
    if (Math.sign(r) !== Math.sign(logits[t]!)) {
      disagreeing++;
      if (gate) rewards[t] = 0;
    }
  }
  return { considered, disagreeing };
}

/** The factor batch_downweight applies to a whole request (1 when its disagreement rate is within bounds). */
export function batchFactor(spec: VerifierSpec, perSequence: readonly Disagreement[]): number {
  if (spec.mode !== 'batch_downweight') return 1;
  const total = perSequence.reduce((a, d) => ({ considered: a.considered + d.considered, disagreeing: a.disagreeing + d.disagreeing }), { considered: 0, disagreeing: 0 });
  return disagreementRate(total) > spec.threshold ? spec.factor : 1;
}
