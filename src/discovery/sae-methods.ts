// SAE-feature discovery methods. Both run the discovery rows through the same engine the server uses (the
// exact encode of the SAE, every feature fetched), then pick features:
//   effect-size  per response, each feature's mean activation over its response tokens; effect =
//                (mean_correct - mean_wrong) / pooled sd; the top N positive get weight +1, the top N negative -1
//                (pipelines/smollm2/features.py does the same in Python);
//   reasonscore  per feature, over every response token: (mean activation on reasoning-vocabulary tokens -
//                mean on other tokens) / sd over all response tokens, times the normalised entropy of its
//                activation mass across the distinct reasoning words (a feature that fires on one word only
//                scores low); the top N get weight +1. Correctness plays no part: it is what G1 then tests.
import path from 'node:path';
import os from 'node:os';

import { planEngine } from '../engine/plan.js';
import { EnginePool, floatRowInput } from '../engine/pool.js';
import { MechRewardError } from '../errors.js';
import { engineKey, type Pack } from '../packs/registry.js';
import { loadSae, type SaeSpec } from '../packs/sae.js';
import { OWN_SCHEMA, parsePackJson } from '../packs/schema.js';
import type { BuildOptions } from './options.js';
import type { DiscoveryData } from './data.js';

/** Reasoning vocabulary (lower-case words; a token counts when its trimmed, lower-cased text is one of them). */
export const REASONING_WORDS = ['however', 'therefore', 'wait', 'thus', 'hence', 'hmm', 'actually', 'let', 'step', 'so', 'because', 'since', 'first', 'then', 'next', 'finally', 'check', 'verify', 'alternatively', 'but'];
/** Exponent of the normalised entropy in the ReasonScore. */
export const REASONSCORE_ENTROPY_POWER = 0.5;
const CHUNK_ROWS = 512;

export function isReasoningToken(token: string): boolean {
  return REASONING_WORDS.includes(token.trim().toLowerCase().replace(/[^a-z]/g, ''));
}

/** Calls `visit(responseIndex, row, acts)` with every response row's activations of all d_sae features. */
async function encodeResponses(sae: SaeSpec, data: DiscoveryData, visit: (i: number, t: number, acts: Float32Array, at: number) => void): Promise<void> {
  const ids = Array.from({ length: sae.dSae }, (_, i) => i);
  const file = path.join(sae.dir, '(discovery)');
  const spec = parsePackJson(file, { schema: OWN_SCHEMA, encode: 'topk', features: ids.map((id) => ({ id, weight: 1 })) });
  const pack: Pack = { name: 'discovery', dir: sae.dir, spec, sae, linear: undefined, verifier: undefined, dModel: sae.dModel, version: 'discovery', fileStamps: {} };
  const engine = await EnginePool.start(planEngine([pack]), {
    workers: 1,
    settings: { executionProvider: 'cpu', intraOpThreads: os.availableParallelism(), allowSpinning: false, cpuMemArena: true },
    batching: { maxBatchTokens: CHUNK_ROWS, maxQueueTokens: Number.MAX_SAFE_INTEGER, maxQueueDelayMs: 0 },
  });
  try {
    const d = data.dModel;
    // Response rows only, in chunks; remember which response and row each belongs to.
    const owners: [number, number][] = [];
    data.responses.forEach((r, i) => {
      for (let t = r.scoreFrom; t < r.numTokens; t++) owners.push([i, t]);
    });
    for (let start = 0; start < owners.length; start += CHUNK_ROWS) {
      const part = owners.slice(start, start + CHUNK_ROWS);
      const rows = new Float32Array(part.length * d);
      part.forEach(([i, t], k) => rows.set(data.rows.subarray((data.responses[i]!.offset + t) * d, (data.responses[i]!.offset + t + 1) * d), k * d));
      const out = await engine.run(engineKey(pack), floatRowInput(rows, part.length), true);
      part.forEach(([i, t], k) => visit(i, t, out.acts!, k * sae.dSae));
    }
  } finally {
    await engine.close();
  }
}

export async function saeFeaturePack(options: BuildOptions, data: DiscoveryData, y: number[], dir: string): Promise<{ json: Record<string, unknown>; discovery: Record<string, unknown> }> {
  const sae = loadSae(path.resolve(options.sae!));
  if (sae.dModel !== data.dModel) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--sae: the SAE reads d_model ${sae.dModel}, the discovery data has ${data.dModel}`);
  const f = sae.dSae;
  const features = options.method === 'effect-size' ? await effectSizeFeatures(sae, data, y, options.top) : await reasonScoreFeatures(sae, data, options.top);
  const nCorrect = y.reduce((a, b) => a + b, 0);
  const what =
    options.method === 'effect-size'
      ? `the ${options.top} largest positive (+1) and negative (-1) effect sizes (mean_correct - mean_wrong)/pooled_sd of mean-pooled response activations`
      : `the ${options.top} highest ReasonScores (activation on reasoning-vocabulary tokens vs other response tokens, times the entropy of its spread over the words; correctness unused)`;
  return {
    json: {
      schema: OWN_SCHEMA,
      kind: 'sae',
      name: options.name,
      description: `SAE features (d_sae ${f}, exact TopK encode) chosen by ${what} on ${y.length} discovery responses (${nCorrect} correct). Built by \`mechreward pack build --method ${options.method}\`.`,
      model: options.model,
      ...(options.layer !== undefined ? { layer: options.layer } : {}),
      sae: path.relative(dir, path.resolve(options.sae!)) || '.',
      encode: 'topk',
      pooling: { method: 'mean' },
      features: features.map(({ id, weight, name }) => ({ id, weight, name })),
    },
    discovery: {
      method: options.method === 'effect-size' ? 'effect size of mean-pooled SAE activations (correct - wrong)/pooled sd' : `ReasonScore: (mean on reasoning tokens - mean on other tokens)/sd x normalised word entropy^${REASONSCORE_ENTROPY_POWER}`,
      ...(options.method === 'reasonscore' ? { reasoning_words: REASONING_WORDS } : {}),
      scores: Object.fromEntries(features.map((x) => [String(x.id), Number(x.score.toPrecision(6))])),
    },
  };
}

interface Chosen {
  id: number;
  weight: number;
  name: string;
  score: number;
}

async function effectSizeFeatures(sae: SaeSpec, data: DiscoveryData, y: number[], top: number): Promise<Chosen[]> {
  const f = sae.dSae;
  const pooled = data.responses.map(() => new Float64Array(f));
  await encodeResponses(sae, data, (i, _t, acts, at) => {
    const p = pooled[i]!;
    for (let j = 0; j < f; j++) p[j]! += acts[at + j]!;
  });
  data.responses.forEach((r, i) => pooled[i]!.forEach((v, j) => (pooled[i]![j] = v / (r.numTokens - r.scoreFrom))));
  const effect = effectSizes(pooled, y);
  const order = Array.from(effect.keys()).sort((a, b) => effect[b]! - effect[a]! || a - b);
  const helpful = order.filter((j) => effect[j]! > 0).slice(0, top);
  const harmful = [...order].reverse().filter((j) => effect[j]! < 0).slice(0, top);
  return [...helpful.map((id, k) => ({ id, weight: 1, name: `helpful_${k + 1}`, score: effect[id]! })), ...harmful.map((id, k) => ({ id, weight: -1, name: `harmful_${k + 1}`, score: effect[id]! }))];
}

/** (mean over correct - mean over wrong) / pooled sd (unbiased variances), per column; 0 where sd is 0. */
export function effectSizes(pooled: readonly Float64Array[], y: readonly number[]): Float64Array {
  const f = pooled[0]!.length;
  const stat = (label: number) => {
    const rows = pooled.filter((_, i) => y[i] === label);
    const m = new Float64Array(f);
    const v = new Float64Array(f);
    for (const r of rows) for (let j = 0; j < f; j++) m[j]! += r[j]! / rows.length;
    for (const r of rows) for (let j = 0; j < f; j++) v[j]! += (r[j]! - m[j]!) ** 2 / (rows.length - 1);
    return { m, v, n: rows.length };
  };
  const c = stat(1);
  const w = stat(0);
  return c.m.map((_, j) => {
    const sd = Math.sqrt(((c.n - 1) * c.v[j]! + (w.n - 1) * w.v[j]!) / (c.n + w.n - 2));
    return sd > 0 ? (c.m[j]! - w.m[j]!) / sd : 0;
  });
}

async function reasonScoreFeatures(sae: SaeSpec, data: DiscoveryData, top: number): Promise<Chosen[]> {
  if (!data.tokens) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--data: ${data.path} carries no token strings (responses[i].tokens); the reasonscore method needs them`);
  const f = sae.dSae;
  const words = new Map(REASONING_WORDS.map((w, k) => [w, k]));
  const sumR = new Float64Array(f);
  const sumO = new Float64Array(f);
  const sumSq = new Float64Array(f);
  const byWord = Array.from({ length: REASONING_WORDS.length }, () => new Float64Array(f));
  let nR = 0;
  let nO = 0;
  await encodeResponses(sae, data, (i, t, acts, at) => {
    const word = data.tokens![i]![t]!.trim().toLowerCase().replace(/[^a-z]/g, '');
    const k = words.get(word);
    const into = k !== undefined ? sumR : sumO;
    if (k !== undefined) nR++;
    else nO++;
    for (let j = 0; j < f; j++) {
      const a = acts[at + j]!;
      if (a === 0) continue;
      into[j]! += a;
      sumSq[j]! += a * a;
      if (k !== undefined) byWord[k]![j]! += a;
    }
  });
  if (nR === 0) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `--data: no response token of ${data.path} is a reasoning word (${REASONING_WORDS.join(', ')})`);
  const n = nR + nO;
  const present = byWord.filter((w) => w.some((v) => v > 0)).length;
  const score = new Float64Array(f);
  for (let j = 0; j < f; j++) {
    const mean = (sumR[j]! + sumO[j]!) / n;
    const sd = Math.sqrt(Math.max(sumSq[j]! / n - mean * mean, 0));
    if (!(sd > 0)) continue;
    const mass = byWord.map((w) => w[j]!);
    const total = mass.reduce((a, b) => a + b, 0);
    let h = 0;
    for (const m of mass) if (m > 0) h -= (m / total) * Math.log(m / total);
    const entropy = present > 1 ? h / Math.log(present) : 1;
    score[j] = ((sumR[j]! / nR - sumO[j]! / Math.max(nO, 1)) / sd) * entropy ** REASONSCORE_ENTROPY_POWER;
  }
  const order = Array.from(score.keys()).sort((a, b) => score[b]! - score[a]! || a - b).filter((j) => score[j]! > 0).slice(0, top);
  return order.map((id, k) => ({ id, weight: 1, name: `reasoning_${k + 1}`, score: score[id]! }));
}
