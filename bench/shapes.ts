// Benchmark shapes and synthetic weights (random; speed does not depend on the values).
export interface Shape {
  readonly name: string;
  readonly dModel: number;
  readonly dSae: number;
  readonly k: number;
}

export const SMALL: Shape = { name: '576x4608 k=32', dModel: 576, dSae: 4608, k: 32 };
export const LARGE: Shape = { name: '2560x40960 k=128', dModel: 2560, dSae: 40960, k: 128 };
export const ROWS = [1, 64, 512, 2048] as const;
/** Pack features used by the engine graphs: 10 helpful and 10 harmful, like the published packs. */
export const FEATURES = 20;

/** Fast deterministic uniform(-scale, scale) fill (an LCG: these are timing inputs, not statistics). */
export function randomFill(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * 2 * scale;
  }
  return out;
}

export function featureIds(shape: Shape): number[] {
  return Array.from({ length: FEATURES }, (_, i) => Math.floor(((i + 1) * shape.dSae) / (FEATURES + 1)));
}

/** Multiply-adds of the encoder GEMM, counted as 2 FLOP each. */
export function gemmFlops(shape: Shape, rows: number): number {
  return 2 * rows * shape.dModel * shape.dSae;
}

/** The bare echo server's one method (bench/echo-server.ts), called by bench/load-client.ts --echo. */
export const ECHO_METHOD = '/mechreward.bench.Echo/Echo';
