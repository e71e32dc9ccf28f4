// Stage gate 1: score every held-out response of a pack with the same engine the server uses, then Spearman's
// rho between the pooled score and correctness (0/1), its p-value, a bootstrap 95 % CI, and the verdict
// (rho >= 0.30). Optionally writes the result as the pack's validation block.
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import * as ort from 'onnxruntime-node';

import { Admission } from '../core/admission.js';
import { Scorer } from '../core/scorer.js';
import { planEngine } from '../engine/plan.js';
import { EnginePool } from '../engine/pool.js';
import { MechRewardError } from '../errors.js';
import { loadPack, poolingLabel } from '../packs/registry.js';
import { PASS_THRESHOLD } from '../packs/validation.js';
import { VERSION } from '../version.js';
import { loadHeldOut } from './heldout.js';
import { bootstrapSpearmanCi, spearman } from './stats.js';

export const BOOTSTRAP_RESAMPLES = 2000;
export const BOOTSTRAP_SEED = 0;
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
  if (data.dModel !== pack.sae.dModel) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${dataFile}: activations have d_model ${data.dModel}, the pack's SAE has ${pack.sae.dModel}`);

  const maxBatchTokens = 1024;
  const engine = await EnginePool.start(planEngine([pack]), {
    workers: 1,
    settings: { executionProvider: 'cpu', intraOpThreads: os.availableParallelism(), allowSpinning: false, cpuMemArena: true },
    batching: { maxBatchTokens, maxQueueTokens: Number.MAX_SAFE_INTEGER, maxQueueDelayMs: 0 },
  });
  const scores: number[] = [];
  try {
    const scorer = new Scorer(new Map([[name, pack]]), engine, new Admission(1), { maxTokensPerRequest: Number.MAX_SAFE_INTEGER, maxBatchTokens });
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
      for (const result of out.results) scores.push(result.reward);
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
    encode: pack.spec.encode,
    pooling: poolingLabel(pack),
    data: path.relative(dir, dataFile),
    data_sha256: data.sha256,
    date: new Date().toISOString().slice(0, 10),
    pass_threshold: PASS_THRESHOLD,
    verdict,
    engine: `mechreward ${VERSION}, onnxruntime ${ort.env.versions.node ?? '?'}`,
  };
  if (options.write) {
    const file = path.join(dir, 'pack.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    json.validation = block;
    writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  }
  return { pack: name, n: scores.length, n_correct: nCorrect, accuracy: nCorrect / scores.length, rho, p, ci, verdict, scores, block };
}
