// Statistics of stage gate 1: Spearman's rho with average ranks for ties (correctness is 0/1, so ties are the
// rule), its two-sided p-value from Student's t with n - 2 degrees of freedom (the same approximation as
// scipy.stats.spearmanr), and a seeded percentile bootstrap CI. Checked against scipy in the tests.
import jstat from 'jstat';

const { jStat } = jstat;

/** 1-based ranks; tied values share the mean of the ranks they span. */
export function averageRanks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1]![0] === order[i]![0]) j++;
    const rank = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) ranks[order[t]![1]] = rank;
    i = j + 1;
  }
  return ranks;
}

/** Pearson correlation; NaN when either side has no variance. */
export function pearson(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i]! - mx;
    const dy = y[i]! - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy);
}

export function spearman(x: readonly number[], y: readonly number[]): { rho: number; p: number } {
  const n = x.length;
  const rho = pearson(averageRanks(x), averageRanks(y));
  if (!Number.isFinite(rho) || n < 3) return { rho, p: NaN };
  if (Math.abs(rho) >= 1) return { rho, p: 0 };
  const t = rho * Math.sqrt((n - 2) / (1 - rho * rho));
  const df = n - 2;
  // Two-sided Student t tail as a regularised incomplete beta, I_{df/(df+t^2)}(df/2, 1/2): exact in the far
  // tail, where 1 - cdf(|t|) would cancel to 0 (a real pack's p is often below 1e-20).
  return { rho, p: jStat.ibeta(df / (df + t * t), df / 2, 0.5) };
}

/** A small seeded PRNG (mulberry32) so a rerun of the gate reproduces its interval exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Percentile bootstrap interval of Spearman's rho: resample pairs with replacement `resamples` times.
 * Resamples without variance on a side (e.g. all correct) have no rho and are skipped and counted.
 */
export function bootstrapSpearmanCi(
  x: readonly number[],
  y: readonly number[],
  { resamples = 2000, level = 0.95, seed = 0 } = {},
): { ci: [number, number]; used: number; skipped: number } {
  const random = mulberry32(seed);
  const n = x.length;
  const rhos: number[] = [];
  const bx = new Array<number>(n);
  const by = new Array<number>(n);
  for (let b = 0; b < resamples; b++) {
    for (let i = 0; i < n; i++) {
      const j = Math.floor(random() * n);
      bx[i] = x[j]!;
      by[i] = y[j]!;
    }
    const r = pearson(averageRanks(bx), averageRanks(by));
    if (Number.isFinite(r)) rhos.push(r);
  }
  rhos.sort((a, b) => a - b);
  const q = (p: number) => rhos[Math.min(rhos.length - 1, Math.max(0, Math.round(p * (rhos.length - 1))))]!;
  const tail = (1 - level) / 2;
  return { ci: [q(tail), q(1 - tail)], used: rhos.length, skipped: resamples - rhos.length };
}
