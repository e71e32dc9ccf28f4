// `mechreward pack build`: discovery data in the held-out format -> a direction or probe pack -> gate g1 on
// held-out data -> a pack `serve` accepts. The probe fit is checked against scipy (L-BFGS on the same
// penalised loss), the direction against numpy, on synthetic residuals where correctness depends on a
// known direction; ReasonScore needs token strings and says so.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { loadDiscovery, meanPooledResiduals } from '../../src/discovery/data.js';
import { effectSizes } from '../../src/discovery/sae-methods.js';
import { fitDirection, fitLogisticProbe } from '../../src/discovery/linear-fit.js';
import { mulberry32 } from '../../src/gate/stats.js';
import { loadPackDirectory } from '../../src/packs/registry.js';
import { validationProblem } from '../../src/packs/validation.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { encodeSafetensors } from '../helpers/safetensors.js';

const BIN = path.join(REPO_ROOT, 'bin/mechreward.js');
const D = 16;

function gaussian(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}

/** n responses of 3-9 rows; a response is correct when its mean row leans along `truth` (plus noise). */
function writeData(file: string, n: number, seed: number, withTokens: boolean): void {
  const random = mulberry32(seed);
  const truth = Float64Array.from({ length: D }, (_, j) => (j < 4 ? 1 : 0));
  const rows: number[] = [];
  const responses: Record<string, unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const prompt = 2;
    const len = prompt + 3 + Math.floor(random() * 7);
    const shift = gaussian(random);
    const block: number[] = [];
    for (let t = 0; t < len; t++) for (let j = 0; j < D; j++) block.push(gaussian(random) + (t >= prompt ? shift * truth[j]! : 0));
    const correct = shift + 0.5 * gaussian(random) > 0 ? 1 : 0;
    const tokens = withTokens ? Array.from({ length: len }, (_, t) => (t % 4 === 0 ? ' therefore' : ` w${t}`)) : undefined;
    responses.push({ id: `r${i}`, offset: rows.length / D, num_tokens: len, score_from: prompt, correct, ...(tokens ? { tokens } : {}) });
    rows.push(...block);
  }
  const f32 = Float32Array.from(rows);
  writeFileSync(file, encodeSafetensors({ activations: { dtype: 'F32', shape: [rows.length / D, D], bytes: new Uint8Array(f32.buffer) } }, { responses: JSON.stringify(responses) }));
}

function python(code: string, input: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = execFile('python3', ['-c', code], { maxBuffer: 1 << 26 }, (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout))));
    child.stdin!.end(JSON.stringify(input));
  });
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'mr-discovery-'));
const discovery = path.join(dir, 'discovery.safetensors');
const heldout = path.join(dir, 'heldout.safetensors');
writeData(discovery, 300, 1, true);
writeData(heldout, 300, 2, false);

test('the probe fit is the minimiser of the penalised logistic loss (scipy L-BFGS agrees), standardisation folded in', async () => {
  const data = loadDiscovery(discovery);
  const x = meanPooledResiduals(data);
  const y = data.responses.map((r) => r.correct as number);
  for (const l2 of [0.1, 1, 10]) {
    const fit = fitLogisticProbe(x, y, { l2 });
    assert.ok(fit.converged);
    const code = `
import json, sys, numpy as np
from scipy.optimize import minimize
d = json.load(sys.stdin); X = np.array(d["x"]); y = np.array(d["y"], float); l2 = d["l2"]
mu = X.mean(0); sd = X.std(0); sd[sd == 0] = 1; Z = (X - mu) / sd
def f(b):
    z = b[0] + Z @ b[1:]
    loss = np.sum(np.logaddexp(0, z) - y * z) + 0.5 * l2 * b[1:] @ b[1:]
    p = 1 / (1 + np.exp(-z)); g = np.concatenate([[np.sum(p - y)], Z.T @ (p - y) + l2 * b[1:]])
    return loss, g
r = minimize(f, np.zeros(Z.shape[1] + 1), jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10000})
w = r.x[1:] / sd; b = r.x[0] - w @ mu
print(json.dumps({"w": w.tolist(), "b": float(b)}))`;
    const ref = (await python(code, { x: x.map((r) => Array.from(r)), y, l2 })) as { w: number[]; b: number };
    const scale = Math.max(...ref.w.map(Math.abs));
    fit.weight.forEach((w, j) => assert.ok(Math.abs(w - ref.w[j]!) < 1e-5 * scale, `l2 ${l2} w[${j}] ${w} vs scipy ${ref.w[j]}`));
    assert.ok(Math.abs(fit.bias - ref.b) < 1e-5 * Math.max(1, Math.abs(ref.b)), `l2 ${l2} bias ${fit.bias} vs scipy ${ref.b}`);
  }
});

test('the direction is mean(correct) - mean(wrong), unit sd on discovery, midpoint scores 0 (numpy agrees)', async () => {
  const data = loadDiscovery(discovery);
  const x = meanPooledResiduals(data);
  const y = data.responses.map((r) => r.correct as number);
  const fit = fitDirection(x, y);
  const code = `
import json, sys, numpy as np
d = json.load(sys.stdin); X = np.array(d["x"]); y = np.array(d["y"]) == 1
v = X[y].mean(0) - X[~y].mean(0); s = (X @ v).std(ddof=1); w = v / s
print(json.dumps({"w": w.tolist(), "b": float(-w @ (X[y].mean(0) + X[~y].mean(0)) / 2)}))`;
  const ref = (await python(code, { x: x.map((r) => Array.from(r)), y })) as { w: number[]; b: number };
  fit.weight.forEach((w, j) => assert.ok(Math.abs(w - ref.w[j]!) < 1e-10, `w[${j}]`));
  assert.ok(Math.abs(fit.bias - ref.b) < 1e-10);
});

test('effect sizes equal numpy (mean_correct - mean_wrong) / pooled sd', async () => {
  const random = mulberry32(5);
  const pooled = Array.from({ length: 40 }, () => Float64Array.from({ length: 6 }, (_, j) => (j === 5 ? 0 : gaussian(random))));
  const y = pooled.map((_, i) => (i % 3 === 0 ? 1 : 0));
  const ours = effectSizes(pooled, y);
  const code = `
import json, sys, numpy as np
d = json.load(sys.stdin); X = np.array(d["x"]); y = np.array(d["y"]) == 1; a, b = X[y], X[~y]
v = ((len(a) - 1) * a.var(0, ddof=1) + (len(b) - 1) * b.var(0, ddof=1)) / (len(a) + len(b) - 2); sd = np.sqrt(v)
e = np.where(sd > 0, (a.mean(0) - b.mean(0)) / np.where(sd > 0, sd, 1), 0)
print(json.dumps(e.tolist()))`;
  const ref = (await python(code, { x: pooled.map((r) => Array.from(r)), y })) as number[];
  ours.forEach((e, j) => assert.ok(Math.abs(e - ref[j]!) < 1e-12, `feature ${j}: ${e} vs ${ref[j]}`));
  assert.equal(ours[5], 0, 'a constant feature has effect 0');
});

for (const method of ['direction', 'probe'] as const) {
  test(`pack build --method ${method} writes a ${method} pack that passes gate g1 and loads for serve`, () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'mr-built-'));
    const out = path.join(root, `synthetic-${method}`);
    const run = spawnSync(process.execPath, [BIN, 'pack', 'build', '--method', method, '--data', discovery, '--heldout', heldout, '--out', out, '--json'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const result = JSON.parse(run.stdout) as { g1: { rho: number; n: number; verdict: string } };
    assert.equal(result.g1.n, 300);
    assert.equal(result.g1.verdict, 'PASS');
    assert.ok(result.g1.rho > 0.5, `rho ${result.g1.rho}`);
    const catalogue = loadPackDirectory(root);
    assert.deepEqual(catalogue.problems, []);
    const pack = catalogue.packs.get(`synthetic-${method}`)!;
    assert.equal(pack.spec.kind, method);
    assert.equal(validationProblem(pack), undefined);
    const json = JSON.parse(readFileSync(path.join(out, 'pack.json'), 'utf8')) as { validation: { kind: string; encode?: string }; discovery: { n: number } };
    assert.equal(json.validation.kind, method);
    assert.equal(json.validation.encode, undefined, 'no encode mode for a pack without an SAE');
    assert.equal(json.discovery.n, 300);
    // A second build into the same folder needs --force.
    const again = spawnSync(process.execPath, [BIN, 'pack', 'build', '--method', method, '--data', discovery, '--out', out], { encoding: 'utf8' });
    assert.equal(again.status, 2);
    assert.match(again.stderr, /--out: .* already holds a pack\.json/);
  });
}

test('pack build --method reasonscore and effect-size score SAE features; reasonscore needs token strings', () => {
  // The parity SAE reads d_model 64: make d_model-64 discovery data for it.
  const sae = path.join(PARITY_PACKS, 'topk-saelens', 'sae');
  const noTokens = spawnSync(process.execPath, [BIN, 'pack', 'build', '--method', 'reasonscore', '--data', heldout, '--sae', sae, '--out', path.join(dir, 'rs')], { encoding: 'utf8' });
  assert.equal(noTokens.status, 2);
  assert.match(noTokens.stderr, /--sae: the SAE reads d_model 64, the discovery data has 16|carries no token strings/);
  const noSae = spawnSync(process.execPath, [BIN, 'pack', 'build', '--method', 'effect-size', '--data', discovery, '--out', path.join(dir, 'es')], { encoding: 'utf8' });
  assert.equal(noSae.status, 2);
  assert.match(noSae.stderr, /--sae: the effect-size method scores SAE features and needs the SAE folder/);
});

test('pack build --method effect-size and reasonscore on an SAE: scores equal a float64 numpy computation on the reference encode', async () => {
  // d_model-64 discovery data with token strings, for the parity fixtures' TopK SAE.
  const file = path.join(dir, 'sae-discovery.safetensors');
  const random = mulberry32(11);
  const words = [' therefore', ' so', ' wait', ' the', ' 12', ' is', ' answer'];
  const rows: number[] = [];
  const responses: Record<string, unknown>[] = [];
  for (let i = 0; i < 60; i++) {
    const len = 2 + 4 + Math.floor(random() * 6);
    const tokens = Array.from({ length: len }, () => words[Math.floor(random() * words.length)]!);
    for (let t = 0; t < len; t++) for (let j = 0; j < 64; j++) rows.push(gaussian(random) * 3 + (tokens[t] === ' therefore' && j < 8 ? 2 : 0));
    responses.push({ id: `s${i}`, offset: rows.length / 64 - len, num_tokens: len, score_from: 2, correct: i % 3 === 0 ? 1 : 0, tokens });
  }
  const f32 = Float32Array.from(rows);
  writeFileSync(file, encodeSafetensors({ activations: { dtype: 'F32', shape: [rows.length / 64, 64], bytes: new Uint8Array(f32.buffer) } }, { responses: JSON.stringify(responses) }));
  const sae = path.join(PARITY_PACKS, 'topk-saelens', 'sae');
  const built: Record<string, Record<string, number>> = {};
  for (const method of ['effect-size', 'reasonscore']) {
    const out = path.join(dir, `built-${method}`);
    const run = spawnSync(process.execPath, [BIN, 'pack', 'build', '--method', method, '--data', file, '--sae', sae, '--out', out, '--top', '4'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const json = JSON.parse(readFileSync(path.join(out, 'pack.json'), 'utf8')) as { sae: string; features: { id: number; weight: number }[]; discovery: { scores: Record<string, number> } };
    assert.equal(path.resolve(out, json.sae), sae, 'the pack points at the SAE by relative path');
    built[method] = json.discovery.scores;
  }
  const code = `
import json, sys
sys.path.insert(0, ${JSON.stringify(path.join(REPO_ROOT, 'scripts', 'parity'))})
import numpy as np, reference as ref
d = json.load(sys.stdin); sae = ref.load_sae(d["sae"])
X = np.array(d["rows"], float).reshape(-1, 64)
pooled, acts, toks = [], [], []
for r in d["responses"]:
    F = ref.encode_exact(sae, ref.pre_activations(sae, X[r["offset"] + r["score_from"]: r["offset"] + r["num_tokens"]]))
    pooled.append(F.mean(0)); acts.append(F); toks += r["tokens"][r["score_from"]:]
P = np.array(pooled); y = np.array([r["correct"] for r in d["responses"]]) == 1; a, b = P[y], P[~y]
sd = np.sqrt(((len(a) - 1) * a.var(0, ddof=1) + (len(b) - 1) * b.var(0, ddof=1)) / (len(a) + len(b) - 2))
effect = np.where(sd > 0, (a.mean(0) - b.mean(0)) / np.where(sd > 0, sd, 1), 0)
A = np.concatenate(acts); words = d["words"]
norm = [''.join(c for c in t.strip().lower() if 'a' <= c <= 'z') for t in toks]
isr = np.array([w in words for w in norm])
mass = np.array([A[np.array([w == word for w in norm])].sum(0) if any(w == word for w in norm) else np.zeros(A.shape[1]) for word in words])
present = int(sum((m > 0).any() for m in mass))
tot = mass.sum(0); p = np.where(tot > 0, mass / np.where(tot > 0, tot, 1), 0)
H = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=0) / np.log(present)
sdall = A.std(0)
rs = np.where(sdall > 0, (A[isr].mean(0) - A[~isr].mean(0)) / np.where(sdall > 0, sdall, 1), 0) * H ** 0.5
print(json.dumps({"effect": effect.tolist(), "reasonscore": rs.tolist()}))`;
  const { REASONING_WORDS } = await import('../../src/discovery/sae-methods.js');
  const ref = (await python(code, { sae, rows: Array.from(f32), responses, words: REASONING_WORDS })) as { effect: number[]; reasonscore: number[] };
  for (const [method, key] of [['effect-size', 'effect'], ['reasonscore', 'reasonscore']] as const) {
    const scores = built[method]!;
    const chosen = Object.keys(scores).map(Number);
    assert.ok(chosen.length >= 4, `${method}: ${chosen.length} features`);
    for (const id of chosen) assert.ok(Math.abs(scores[id]! - ref[key][id]!) <= 1e-4 * Math.abs(ref[key][id]!) + 1e-6, `${method} feature ${id}: ${scores[id]} vs numpy ${ref[key][id]}`);
    // The chosen features are the reference's best (by |score| per sign for effect size, by score for ReasonScore).
    const order = ref[key].map((v, i) => [v, i] as const);
    const topPositive = [...order].sort((p, q) => q[0] - p[0]).slice(0, 4).map(([, i]) => i);
    assert.deepEqual(chosen.filter((id) => scores[id]! > 0).sort((p, q) => p - q), [...topPositive].sort((p, q) => p - q), `${method}: top positive features`);
  }
});
