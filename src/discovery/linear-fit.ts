// Fitting linear read-outs of the residual on discovery responses (float64 throughout):
//   - direction: mean(correct) - mean(wrong) of the mean-pooled residuals, scaled so the discovery responses'
//     pooled scores have unit standard deviation, and biased so the midpoint of the two class means scores 0
//     (a positive r_t leans "correct"; the sign is what a dual verifier checks);
//   - probe: L2-regularised logistic regression on standardised pooled residuals, fitted by Newton's method
//     (IRLS) with a Cholesky solve (ml-matrix); the standardisation is folded back into weight and bias.
import { CholeskyDecomposition, Matrix } from 'ml-matrix';

import { MechRewardError } from '../errors.js';

export interface LinearFit {
  readonly weight: Float64Array;
  readonly bias: number;
}

function mean(rows: readonly Float64Array[], d: number): Float64Array {
  const out = new Float64Array(d);
  for (const r of rows) for (let j = 0; j < d; j++) out[j]! += r[j]!;
  for (let j = 0; j < d; j++) out[j]! /= rows.length;
  return out;
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j]! * b[j]!;
  return s;
}

function classes(x: readonly Float64Array[], y: readonly number[]): { pos: Float64Array[]; neg: Float64Array[] } {
  const pos = x.filter((_, i) => y[i] === 1);
  const neg = x.filter((_, i) => y[i] === 0);
  if (pos.length < 2 || neg.length < 2) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `discovery data needs at least 2 correct and 2 wrong responses (has ${pos.length} and ${neg.length})`);
  return { pos, neg };
}

export function fitDirection(x: readonly Float64Array[], y: readonly number[]): LinearFit {
  const d = x[0]!.length;
  const { pos, neg } = classes(x, y);
  const mc = mean(pos, d);
  const mw = mean(neg, d);
  const dir = mc.map((v, j) => v - mw[j]!);
  const scores = x.map((r) => dot(dir, r));
  const m = scores.reduce((a, b) => a + b, 0) / scores.length;
  const sd = Math.sqrt(scores.reduce((a, s) => a + (s - m) ** 2, 0) / (scores.length - 1));
  if (!(sd > 0)) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'the correct and wrong responses have the same mean residual: no direction to fit');
  const weight = dir.map((v) => v / sd);
  const mid = mc.map((v, j) => (v + mw[j]!) / 2);
  return { weight, bias: -dot(weight, mid) };
}

export interface ProbeOptions {
  /** L2 penalty on the standardised weights (not the intercept): loss = sum logloss + l2/2 |beta|^2 (C = 1/l2). */
  readonly l2: number;
  readonly maxIterations?: number;
  readonly tolerance?: number;
}

export interface ProbeFit extends LinearFit {
  readonly iterations: number;
  readonly converged: boolean;
  /** The fit in the standardised space (intercept first), for cross-checks. */
  readonly standardised: { beta: Float64Array; mean: Float64Array; scale: Float64Array };
}

export function fitLogisticProbe(x: readonly Float64Array[], y: readonly number[], options: ProbeOptions): ProbeFit {
  classes(x, y);
  if (!(options.l2 > 0)) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--l2 must be > 0 (the residuals are wider than the discovery set), got ${options.l2}`);
  const n = x.length;
  const d = x[0]!.length;
  const mu = mean(x, d);
  const scale = new Float64Array(d);
  for (const r of x) for (let j = 0; j < d; j++) scale[j]! += (r[j]! - mu[j]!) ** 2;
  for (let j = 0; j < d; j++) scale[j] = Math.sqrt(scale[j]! / n) || 1; // a constant column stays unscaled (its z is 0)
  // Design matrix with an intercept column first.
  const z = new Matrix(n, d + 1);
  for (let i = 0; i < n; i++) {
    z.set(i, 0, 1);
    for (let j = 0; j < d; j++) z.set(i, j + 1, (x[i]![j]! - mu[j]!) / scale[j]!);
  }
  let beta = new Float64Array(d + 1);
  const maxIt = options.maxIterations ?? 100;
  const tol = options.tolerance ?? 1e-10;
  let iterations = 0;
  let converged = false;
  for (; iterations < maxIt && !converged; iterations++) {
    const eta = z.mmul(Matrix.columnVector(Array.from(beta))).to1DArray();
    const p = eta.map((e) => 1 / (1 + Math.exp(-e)));
    // Gradient of the penalised loss, and its Hessian Z^T W Z + l2 I (intercept unpenalised).
    const residual = Matrix.columnVector(p.map((pi, i) => pi - y[i]!));
    const grad = z.transpose().mmul(residual).to1DArray();
    for (let j = 1; j <= d; j++) grad[j]! += options.l2 * beta[j]!;
    const zw = z.clone();
    for (let i = 0; i < n; i++) {
      const w = Math.max(p[i]! * (1 - p[i]!), 1e-12);
      for (let j = 0; j <= d; j++) zw.set(i, j, zw.get(i, j) * w);
    }
    const hRaw = z.transpose().mmul(zw);
    // Z^T (W Z) is symmetric in exact arithmetic; make it so in floating point for the Cholesky check.
    const h = hRaw.add(hRaw.transpose()).mul(0.5);
    for (let j = 1; j <= d; j++) h.set(j, j, h.get(j, j) + options.l2);
    const chol = new CholeskyDecomposition(h);
    if (!chol.isPositiveDefinite()) throw new MechRewardError('MR_ERR_INTERNAL', 'probe fit: Hessian is not positive definite');
    const step = chol.solve(Matrix.columnVector(grad)).to1DArray();
    beta = beta.map((b, j) => b - step[j]!);
    converged = Math.max(...step.map(Math.abs)) < tol * Math.max(1, Math.max(...Array.from(beta, Math.abs)));
  }
  // Fold the standardisation in: beta_j (x_j - mu_j) / s_j = (beta_j / s_j) x_j - beta_j mu_j / s_j.
  const weight = new Float64Array(d);
  let bias = beta[0]!;
  for (let j = 0; j < d; j++) {
    weight[j] = beta[j + 1]! / scale[j]!;
    bias -= weight[j]! * mu[j]!;
  }
  return { weight, bias, iterations, converged, standardised: { beta, mean: mu, scale } };
}
