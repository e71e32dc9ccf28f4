// Stage gate 1: score every held-out response of a pack with the same engine the server uses, then Spearman's
// rho between the pooled score and correctness (0/1), its p-value, a bootstrap 95 % CI, and the verdict
// (rho >= 0.30). Optionally writes the result as the pack's validation block, and calibrates the canary
// monitor (off-distribution bound, baseline flag rate) on the same held-out responses.
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import * as ort from 'onnxruntime-node';

import { Admission } from '../core/admission.js';
import { Scorer } from '../core/scorer.js';
import { planEngine } from '../engine/plan.js';
import { EnginePool } from '../engine/pool.js';
import { MechRewardError } from '../errors.js';
import { loadPack, poolingLabel, type Pack } from '../packs/registry.js';
import { PASS_THRESHOLD } from '../packs/validation.js';
import { VERSION } from '../version.js';
import { loadHeldOut } from './heldout.js';
import { bootstrapSpearmanCi, spearman } from './stats.js';

export const BOOTSTRAP_RESAMPLES = 2000;
export const BOOTSTRAP_SEED = 0;
/** Held-out FVU quantile taken as the off-distribution bound: about 1 % of healthy responses flag. */
export const FVU_QUANTILE = 0.99;
/** Responses per Score call: keeps each call well inside the default request limits. */
const RESPONSES_PER_CALL = 64;

export interface G1Result {
  pack: string;
  n: number;
  n_correct: number;
  accuracy: number;
  rho: number;
  p: number;
  ci: [number, number];
  verdict: 'PASS' | 'FAIL';
  scores: number[];
  block: Record<string, unknown>;
  /** Monitor calibration (off-distribution bound and baseline), when the SAE can decode. */
  calibration: { fvu_bound: number; fvu_quantile: number; fvu_median: number; baseline: { flagged: number; n: number } } | undefined;
}

export interface G1Options {
  /** Held-out data file; default: the pack's `validation.data`. Relative paths are taken from the cwd. */
  readonly data?: string;
  /** Write the validation block into pack.json. */
  readonly write: boolean;
}

export async function runG1(packDir: string, options: G1Options): Promise<G1Result> {
  const dir = path.resolve(packDir);
  const name = path.basename(dir);
  const pack = loadPack(name, dir);
  const dataFile = options.data ? path.resolve(options.data) : pack.spec.validation.data ? path.resolve(dir, pack.spec.validation.data) : undefined;
  if (!dataFile) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--data: ${dir}/pack.json names no held-out data (validation.data); pass --data PATH`);
  const data = loadHeldOut(dataFile);
  if (data.dModel !== pack.dModel) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${dataFile}: activations have d_model ${data.dModel}, the pack reads d_model ${pack.dModel}`);

  // Calibration of the off-distribution rule rides along when the SAE can decode: score with an infinite bound
  // so every response's reconstruction FVU is measured and none is flagged by it.
  const canCalibrate = pack.sae?.architecture === 'topk' && pack.spec.encode !== 'selected_relu' && pack.sae.tensors.wDec !== undefined;
  const scored: Pack = canCalibrate ? { ...pack, spec: { ...pack.spec, monitor: { ...pack.spec.monitor, fvuBound: Number.MAX_VALUE } } } : pack;
  const maxBatchTokens = 1024;
  const engine = await EnginePool.start(planEngine([scored]), {
    workers: 1,
    settings: { executionProvider: 'cpu', intraOpThreads: os.availableParallelism(), allowSpinning: false, cpuMemArena: true },
    batching: { maxBatchTokens, maxQueueTokens: Number.MAX_SAFE_INTEGER, maxQueueDelayMs: 0 },
  });
  const scores: number[] = [];
  const fvus: number[] = [];
  const otherFlags: boolean[] = [];
  const disagreements: number[] = [];
  try {
    const scorer = new Scorer(new Map([[name, scored]]), engine, new Admission(1), { maxTokensPerRequest: Number.MAX_SAFE_INTEGER, maxBatchTokens });
    for (let i = 0; i < data.responses.length; i += RESPONSES_PER_CALL) {
      const chunk = data.responses.slice(i, i + RESPONSES_PER_CALL);
      const out = await scorer.score({
        pack: name,
        runId: 'gate-g1',
        sequences: chunk.map((r) => ({
          activations: data.activations.subarray(r.offset * data.bytesPerToken, (r.offset + r.numTokens) * data.bytesPerToken),
          dtype: data.dtype,
          num_tokens: r.numTokens,
          score_from: r.scoreFrom,
        })),
      });
      for (const result of out.results) {
        scores.push(result.reward);
        if (result.fvu !== undefined) fvus.push(result.fvu);
        otherFlags.push(result.flags.length > 0);
        if (result.verifierDisagreement !== undefined) disagreements.push(result.verifierDisagreement);
      }
    }
  } finally {
    await engine.close();
  }

  const correct = data.responses.map((r) => r.correct as number);
  const { rho, p } = spearman(scores, correct);
  const { ci } = bootstrapSpearmanCi(scores, correct, { resamples: BOOTSTRAP_RESAMPLES, seed: BOOTSTRAP_SEED });
  const nCorrect = correct.reduce((a, b) => a + b, 0);
  const verdict = Number.isFinite(rho) && rho >= PASS_THRESHOLD ? 'PASS' : 'FAIL';
  const block = {
    method: 'G1: Spearman rho between the pooled pack score and correctness (0/1) on held-out responses',
    rho,
    n: scores.length,
    p,
    ci,
    ci_level: 0.95,
    bootstrap: { resamples: BOOTSTRAP_RESAMPLES, seed: BOOTSTRAP_SEED, method: 'percentile' },
    n_correct: nCorrect,
    accuracy: nCorrect / scores.length,
    kind: pack.spec.kind,
    ...(pack.spec.kind === 'sae' ? { encode: pack.spec.encode } : {}),
    pooling: poolingLabel(pack),
    data: path.relative(dir, dataFile),
    data_sha256: data.sha256,
    date: new Date().toISOString().slice(0, 10),
    pass_threshold: PASS_THRESHOLD,
    verdict,
    engine: `mechreward ${VERSION}, onnxruntime ${ort.env.versions.node ?? '?'}`,
    // With a dual verifier the gate measures the verified reward; this is how often the probe disagreed.
    ...(pack.spec.verifier ? { verifier: { mode: pack.spec.verifier.mode, mean_disagreement: disagreements.reduce((a, b) => a + b, 0) / disagreements.length } } : {}),
  };
  // The monitor's calibration from the same held-out responses (healthy rollouts by construction): the
  // off-distribution bound at the FVU quantile, and the baseline flag rate under the pack's rules with it.
  let calibration: G1Result['calibration'];
  if (fvus.length === scores.length && fvus.length > 0) {
    const sorted = [...fvus].sort((a, b) => a - b);
    const fvuBound = sorted[Math.min(sorted.length - 1, Math.ceil(FVU_QUANTILE * sorted.length) - 1)]!;
    const flagged = fvus.filter((f, i) => otherFlags[i] || f > fvuBound).length;
    calibration = { fvu_bound: fvuBound, fvu_quantile: FVU_QUANTILE, fvu_median: sorted[Math.floor(sorted.length / 2)]!, baseline: { flagged, n: fvus.length } };
  }
  if (options.write) {
    const file = path.join(dir, 'pack.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    json.validation = block;
    if (calibration) {
      const monitor = (typeof json.monitor === 'object' && json.monitor !== null ? json.monitor : {}) as Record<string, unknown>;
      json.monitor = { ...monitor, fvu_bound: calibration.fvu_bound, baseline: calibration.baseline, calibration: { method: `gate g1: FVU quantile ${FVU_QUANTILE} of the held-out responses; baseline = held-out responses flagged by the pack's rules`, data_sha256: data.sha256, fvu_median: calibration.fvu_median } };
    }
    writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  }
  return { pack: name, n: scores.length, n_correct: nCorrect, accuracy: nCorrect / scores.length, rho, p, ci, verdict, scores, block, calibration };
}
