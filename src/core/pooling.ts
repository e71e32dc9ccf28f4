// Pools per-token rewards of the response tokens into one score (float64 accumulation).
import type { Pooling } from '../packs/schema.js';

/** `values[from, to)` are the response tokens; `to - from` is at least 1 (validated upstream). */
export function pool(values: ArrayLike<number>, from: number, to: number, pooling: Pooling): number {
  switch (pooling.method) {
    case 'sum':
      return sum(values, from, to);
    case 'mean':
      return sum(values, from, to) / (to - from);
    case 'max': {
      let m = -Infinity;
      for (let i = from; i < to; i++) m = Math.max(m, values[i]!);
      return m;
    }
    case 'last_k': {
      const start = Math.max(from, to - pooling.k);
      return sum(values, start, to) / (to - start);
    }
  }
}

function sum(values: ArrayLike<number>, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i++) s += values[i]!;
  return s;
}
