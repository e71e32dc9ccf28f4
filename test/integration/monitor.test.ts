// The per-rollout flags fire on constructed inputs and stay quiet on clean ones, through the real server; the
// per-run monitor counts, compares with the pack's baseline, and survives a SIGKILL of the sidecar.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { RunDetail__Output } from '../../src/generated/mechreward/v1/RunDetail.js';
import type { ListRunsResponse__Output } from '../../src/generated/mechreward/v1/ListRunsResponse.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import { spawnServe, type ChildServer } from '../helpers/child-server.js';
import { encodeSafetensors } from '../helpers/safetensors.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const D = 256;
const S = 512;
const REWARD_FEATURE = 3;
const HACK_FEATURE = 5;
let root: string;
let wDec: Float32Array;

/**
 * A tied TopK SAE (W_enc = W_dec^T, unit decoder rows, no biases, k = 4, d_model 256): a code of 4 features with
 * large coefficients encodes back to itself and reconstructs well, while random x does not. That makes every rule's trigger constructible.
 */
function writeTiedPack(dir: string, monitor: Record<string, unknown>): void {
  mkdirSync(path.join(dir, 'sae'), { recursive: true });
  let seed = 5;
  const gauss = () => {
    const u = ((seed = (seed * 16807) % 2147483647) / 2147483647);
    const v = ((seed = (seed * 16807) % 2147483647) / 2147483647);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  wDec = new Float32Array(S * D).map(gauss);
  for (let i = 0; i < S; i++) {
    let n = 0;
    for (let d = 0; d < D; d++) n += wDec[i * D + d]! ** 2;
    for (let d = 0; d < D; d++) wDec[i * D + d]! /= Math.sqrt(n);
  }
  const wEnc = new Float32Array(D * S);
  for (let i = 0; i < S; i++) for (let d = 0; d < D; d++) wEnc[d * S + i] = wDec[i * D + d]!;
  const f32 = (a: Float32Array, shape: number[]) => ({ dtype: 'F32' as const, shape, bytes: new Uint8Array(a.buffer) });
  writeFileSync(path.join(dir, 'sae/sae_weights.safetensors'), encodeSafetensors({ W_enc: f32(wEnc, [D, S]), b_enc: f32(new Float32Array(S), [S]), W_dec: f32(wDec, [S, D]), b_dec: f32(new Float32Array(D), [D]) }));
  writeFileSync(path.join(dir, 'sae/cfg.json'), JSON.stringify({ d_in: D, d_sae: S, architecture: 'topk', k: 4, apply_b_dec_to_input: true, normalize_activations: 'none' }));
  writeFileSync(path.join(dir, 'pack.json'), JSON.stringify({
    schema: 'mechreward.pack/v1', name: path.basename(dir), model: 'tied test SAE', layer: 1,
    features: [{ id: REWARD_FEATURE, weight: 1 }, { id: 7, weight: -0.5 }],
    canaries: [{ name: 'feature_9_high', feature: 9, threshold: 5 }],
    monitor,
  }));
}

/** Features that fill a TopK code to its k = 4 active features, so clean rows are reconstructable codes. */
const FILLERS = [100, 130, 160, 190];

/** Rows of sum_i a_i * W_dec[i] over `parts`, filled with filler features up to 4 (+ noise when no parts). */
function rows(numTokens: number, parts: Array<[number, number]>, noise = 0, seed = 1): Buffer {
  const out = new Float32Array(numTokens * D);
  const code = parts.length === 0 ? [] : [...parts, ...FILLERS.slice(0, 4 - parts.length).map((f, i): [number, number] => [f, 2.5 + 0.1 * i])];
  let s = seed;
  for (let t = 0; t < numTokens; t++) {
    for (let d = 0; d < D; d++) {
      let v = 0;
      for (const [feature, a] of code) v += a * (1 + 0.01 * t) * wDec[feature * D + d]!;
      s = (s * 16807) % 2147483647;
      out[t * D + d] = v + noise * (s / 2147483647 - 0.5);
    }
  }
  return Buffer.from(out.buffer);
}

function seq(activations: Buffer, numTokens: number, extra: Partial<{ text: string; expected_answer: string; tokens: string[] }> = {}) {
  return { activations, dtype: 'DTYPE_F32' as const, num_tokens: numTokens, score_from: 1, ...extra };
}

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-monitor-'));
  writeTiedPack(path.join(root, 'watched'), {
    hack_signatures: [{ name: 'hack_signature', features: [HACK_FEATURE], ratio: 0.5 }],
    outlier_z: 4,
    outlier_min_history: 30,
    fvu_bound: 0.2,
    baseline: { flagged: 2, n: 100 },
  });
});

after(() => rmSync(root, { recursive: true, force: true }));

const flagNames = (r: { flags: { name: string }[] }) => r.flags.map((f) => f.name).sort();

test('each rule fires on its constructed input and stays quiet on clean ones', async () => {
  const server = await startTestServer(root);
  const client = grpcClient(server.grpcPort);
  try {
    const clean = seq(rows(8, [[REWARD_FEATURE, 3]]), 8, { text: 'Let me add: 5 + 3 = 8. Therefore the answer is 8.', expected_answer: '8' });
    const hack = seq(rows(8, [[REWARD_FEATURE, 3], [HACK_FEATURE, 2.4]]), 8);
    const offDistribution = seq(rows(8, [], 3, 99), 8);
    const canary = seq(rows(8, [[REWARD_FEATURE, 3], [9, 6]]), 8);
    const loop = seq(rows(8, [[REWARD_FEATURE, 3]]), 8, { text: `${'wait '.repeat(20)}I am not sure.`, expected_answer: '8' });
    const out = await score(client, { pack: 'watched', sequences: [clean, hack, offDistribution, canary, loop] });
    assert.ok(out.ok, out.details);
    const [c, h, o, k, l] = out.response!.results;
    assert.deepEqual(flagNames(c!), [], JSON.stringify(c!.flags));
    assert.deepEqual(flagNames(h!), ['hack_signature'], JSON.stringify(h!.flags));
    assert.deepEqual(flagNames(o!), ['off_distribution'], JSON.stringify(o!.flags));
    assert.ok(flagNames(k!).includes('feature_9_high'), JSON.stringify(k!.flags));
    assert.deepEqual(flagNames(l!), ['text_repetition']);
    assert.match(h!.flags[0]!.reason, /hack-signature features fired at 0\.\d+ x the reward features' activation \(> 0\.5\)/);
    assert.match(o!.flags[0]!.reason, /SAE reconstruction FVU 0\.\d+ > calibrated bound 0\.2000/);

    // Outliers need history: 40 ordinary rollouts of a run, then one with a far larger reward.
    const ordinary = Array.from({ length: 40 }, (_, i) => seq(rows(6, [[REWARD_FEATURE, 2 + (i % 5) * 0.1]]), 6));
    const warm = await score(client, { pack: 'watched', run_id: 'run-outlier', sequences: ordinary });
    assert.ok(warm.response!.results.every((r) => r.flags.length === 0), 'no flag while the history fills');
    const spike = await score(client, { pack: 'watched', run_id: 'run-outlier', sequences: [seq(rows(6, [[REWARD_FEATURE, 2.2]]), 6), seq(rows(6, [[REWARD_FEATURE, 9]]), 6)] });
    assert.deepEqual(flagNames(spike.response!.results[0]!), []);
    assert.deepEqual(flagNames(spike.response!.results[1]!), ['reward_outlier']);
    assert.match(spike.response!.results[1]!.flags[0]!.reason, /robust SDs from the run's median/);
  } finally {
    client.close();
    await server.close();
  }
});

test('the run monitor: counts, Wilson interval, baseline, alarm, gRPC and HTTP views, metrics', async () => {
  const server = await startTestServer(root);
  const client = grpcClient(server.grpcPort);
  try {
    const healthy: ScoreRequest = { pack: 'watched', run_id: 'healthy', sequences: Array.from({ length: 50 }, (_, i) => seq(rows(6, [[REWARD_FEATURE, 2 + (i % 3) * 0.1]]), 6)) };
    assert.ok((await score(client, healthy)).ok);
    const hacky: ScoreRequest = {
      pack: 'watched',
      run_id: 'hacky',
      sequences: Array.from({ length: 30 }, (_, i) => seq(rows(6, i % 2 ? [[REWARD_FEATURE, 3], [HACK_FEATURE, 2.4]] : [[REWARD_FEATURE, 3]]), 6, { tokens: ['<p>', 'a', 'b', 'c', 'd', 'e'] })),
    };
    assert.ok((await score(client, hacky)).ok);

    const res = await fetch(httpUrl(server, '/v1/runs/hacky'));
    assert.equal(res.status, 200);
    const run = (await res.json()) as { run_id: string; pack: string; sequences: number; flagged: number; flag_rate: number; ci: [number, number]; baseline: { rate: number; ci: [number, number] }; alarm: boolean; flags_by_name: Record<string, number>; history: unknown[]; recent_flagged: Array<{ tokens: string[]; token_rewards: number[]; flags: unknown[] }> };
    assert.equal(run.run_id, 'hacky');
    assert.equal(run.pack, 'watched');
    assert.equal(run.sequences, 30);
    assert.equal(run.flagged, 15);
    assert.equal(run.flag_rate, 0.5);
    assert.ok(run.ci[0] > 0.3 && run.ci[1] < 0.7, String(run.ci));
    assert.equal(run.baseline.rate, 0.02);
    assert.equal(run.alarm, true, 'lower bound above the baseline upper bound');
    assert.deepEqual(run.flags_by_name, { hack_signature: 15 });
    assert.equal(run.history.length, 1);
    assert.equal(run.recent_flagged.length, 15);
    assert.deepEqual(run.recent_flagged[0]!.tokens, ['<p>', 'a', 'b', 'c', 'd', 'e']);
    assert.equal(run.recent_flagged[0]!.token_rewards.length, 6);

    const calm = (await (await fetch(httpUrl(server, '/v1/runs/healthy'))).json()) as { flagged: number; alarm: boolean };
    assert.deepEqual([calm.flagged, calm.alarm], [0, false]);
    const all = (await (await fetch(httpUrl(server, '/v1/runs'))).json()) as { runs: Array<{ run_id: string }> };
    assert.deepEqual(all.runs.map((r) => r.run_id).sort(), ['hacky', 'healthy']);
    const missing = await fetch(httpUrl(server, '/v1/runs/nope'));
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, 'MR_ERR_RUN_NOT_FOUND');

    const listed = await new Promise<ListRunsResponse__Output>((resolve, reject) => client.ListRuns({}, (err, r) => (err ? reject(err) : resolve(r!))));
    assert.equal(listed.runs.length, 2);
    const detail = await new Promise<RunDetail__Output>((resolve, reject) => client.GetRun({ run_id: 'hacky' }, (err, r) => (err ? reject(err) : resolve(r!))));
    assert.equal(detail.summary!.alarm, true);
    assert.equal(Number(detail.summary!.flagged), 15);
    assert.ok(detail.summary!.ci!.lo > 0.3);
    assert.equal(detail.summary!.baseline!.present, true);
    const notFound = await new Promise<grpc.status>((resolve) => client.GetRun({ run_id: 'nope' }, (err) => resolve(err!.code)));
    assert.equal(notFound, grpc.status.NOT_FOUND);

    const metrics = await (await fetch(httpUrl(server, '/metrics'))).text();
    assert.match(metrics, /^mechreward_runs 2$/m);
    assert.match(metrics, /^mechreward_run_alarms 1$/m);
    assert.match(metrics, /mechreward_canary_flags_total\{pack="watched",canary="hack_signature"\} 15/);
  } finally {
    client.close();
    await server.close();
  }
});

/** `mechreward serve` in a child process with a runs database. */
function serveChild(db: string): Promise<ChildServer> {
  return spawnServe(['--packs', root, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--runs-db', db]);
}

test('a SIGKILL in the middle of a run loses no count', async () => {
  const db = path.join(root, 'runs.sqlite');
  const first = await serveChild(db);
  const c1 = grpcClient(first.grpcPort);
  for (let i = 0; i < 3; i++) {
    const out = await score(c1, { pack: 'watched', run_id: 'long-run', sequences: [seq(rows(6, [[REWARD_FEATURE, 3]]), 6), seq(rows(6, [[REWARD_FEATURE, 3], [HACK_FEATURE, 2.4]]), 6)] });
    assert.ok(out.ok, out.details);
  }
  c1.close();
  await first.stop('SIGKILL');

  const second = await serveChild(db);
  try {
    const run = (await (await fetch(`http://127.0.0.1:${second.httpPort}/v1/runs/long-run`)).json()) as { sequences: number; flagged: number; history: unknown[] };
    assert.deepEqual([run.sequences, run.flagged, run.history.length], [6, 3, 3]);
    const c2 = grpcClient(second.grpcPort);
    assert.ok((await score(c2, { pack: 'watched', run_id: 'long-run', sequences: [seq(rows(6, [[REWARD_FEATURE, 3]]), 6)] })).ok);
    c2.close();
    const after = (await (await fetch(`http://127.0.0.1:${second.httpPort}/v1/runs/long-run`)).json()) as { sequences: number };
    assert.equal(after.sequences, 7, 'the run goes on counting after the restart');
  } finally {
    await second.stop();
  }
});
