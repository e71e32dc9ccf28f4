// Parity of direction packs, probe packs (logit and probability outputs) and both dual-verifier modes
// (token_gate on an SAE pack and on a direction pack whose verifier is a probe pack folder; batch_downweight
// above and below its threshold): the real server's per-token rewards, pooled rewards, disagreement rates and
// downweight factors equal the independent float64 reference (scripts/parity/reference.py) on
// linear_cases.json, which includes high-norm rows, rewards near 0 (cancellation), f16-subnormal rows and
// saturated sigmoids. Each case is one request, as batch_downweight is a per-request rule.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { PARITY_DIR, PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';
import type { RunDetail__Output } from '../../src/generated/mechreward/v1/RunDetail.js';

const REL_TOL = 1e-4;
const SCALE_FLOOR = 1e-3;

interface LinearSequence {
  file: string;
  num_tokens: number;
  score_from: number;
  row_kinds: string[];
  token_rewards: number[];
  token_scales: number[];
  reward: number;
  reward_scale: number;
  verifier_disagreement: number | null;
  verifier_tokens: [number, number] | null;
}

interface LinearCase {
  pack: string;
  dtype: 'f32' | 'f16' | 'bf16';
  sequences: LinearSequence[];
  verifier_factor: number;
  has_verifier: boolean;
}

const cases = (JSON.parse(readFileSync(path.join(PARITY_DIR, 'linear_cases.json'), 'utf8')) as { cases: LinearCase[] }).cases;
const WIRE_DTYPE = { f32: 'DTYPE_F32', f16: 'DTYPE_F16', bf16: 'DTYPE_BF16' } as const;

let server: RunningServer;
let client: RewardServiceClient;

before(async () => {
  server = await startTestServer(PARITY_PACKS);
  client = grpcClient(server.grpcPort);
});

after(async () => {
  client.close();
  await server.close();
});

test('the linear fixtures cover both pack kinds, both verifier modes, every dtype and the nasty rows', () => {
  const packs = new Set(cases.map((c) => c.pack));
  for (const p of ['direction-f32', 'probe-logistic-bf16', 'probe-linear-f16', 'verifier-gate-sae', 'verifier-gate-direction', 'verifier-downweight-on', 'verifier-downweight-off']) assert.ok(packs.has(p), `no ${p} case`);
  assert.deepEqual(new Set(cases.map((c) => c.dtype)), new Set(['f32', 'f16', 'bf16']));
  const kinds = new Set(cases.flatMap((c) => c.sequences.flatMap((s) => s.row_kinds)));
  for (const k of ['random', 'high_norm', 'near_zero', 'tiny', 'saturated']) assert.ok(kinds.has(k), `no ${k} rows`);
  assert.ok(cases.some((c) => c.verifier_factor !== 1), 'no case is downweighted');
  assert.ok(cases.some((c) => c.pack.startsWith('verifier-gate') && c.sequences.some((s) => (s.verifier_disagreement ?? 0) > 0)), 'token_gate never gates');
});

for (const c of cases) {
  test(`parity ${c.pack} ${c.dtype}`, async () => {
    const sequences = c.sequences.map((s) => ({ activations: readFileSync(path.join(PARITY_DIR, s.file)), dtype: WIRE_DTYPE[c.dtype], num_tokens: s.num_tokens, score_from: s.score_from }));
    const out = await score(client, { pack: c.pack, sequences });
    assert.ok(out.ok, out.details);
    const results = out.response!.results;
    c.sequences.forEach((s, i) => {
      const got = results[i]!;
      assert.equal(got.token_rewards.length, s.num_tokens);
      for (let t = 0; t < s.num_tokens; t++) {
        const err = Math.abs(got.token_rewards[t]! - s.token_rewards[t]!) / Math.max(s.token_scales[t]!, SCALE_FLOOR);
        assert.ok(err <= REL_TOL, `seq ${i} token ${t} (${s.row_kinds[t]}): got ${got.token_rewards[t]}, reference ${s.token_rewards[t]} (rel. error ${err.toExponential(2)})`);
        if (t < s.score_from) assert.equal(got.token_rewards[t], 0, 'prompt tokens get reward 0');
        // A token the verifier gated is exactly 0, as in the reference.
        if (s.token_rewards[t] === 0) assert.equal(got.token_rewards[t], 0, `seq ${i} token ${t}: the reference zeroed it`);
      }
      const pooledErr = Math.abs(got.reward - s.reward) / Math.max(s.reward_scale, SCALE_FLOOR);
      assert.ok(pooledErr <= REL_TOL, `seq ${i} pooled: got ${got.reward}, reference ${s.reward}`);
      assert.equal(got.has_verifier, c.has_verifier);
      if (c.has_verifier) {
        assert.ok(Math.abs(got.verifier_disagreement - s.verifier_disagreement!) < 1e-12, `seq ${i} disagreement: got ${got.verifier_disagreement}, reference ${s.verifier_disagreement}`);
        assert.equal(got.verifier_factor, c.verifier_factor, `seq ${i} downweight factor`);
      } else {
        assert.equal(got.verifier_disagreement, 0);
        assert.equal(got.verifier_factor, 1);
      }
    });
  });
}

function getRun(runId: string): Promise<RunDetail__Output> {
  return new Promise((resolve, reject) => client.GetRun({ run_id: runId }, (err, res) => (err ? reject(err) : resolve(res!))));
}

test('the run monitor and /metrics report the verifier disagreement per run (gRPC GetRun, HTTP, histogram)', async () => {
  for (const pack of ['verifier-gate-direction', 'verifier-downweight-on']) {
    const picked = cases.filter((c) => c.pack === pack);
    const runId = `verifier-${pack}`;
    for (const c of picked) {
      const sequences = c.sequences.map((s) => ({ activations: readFileSync(path.join(PARITY_DIR, s.file)), dtype: WIRE_DTYPE[c.dtype], num_tokens: s.num_tokens, score_from: s.score_from }));
      assert.ok((await score(client, { pack: c.pack, sequences, run_id: runId })).ok);
    }
    const seqs = picked.flatMap((c) => c.sequences);
    const tokens = seqs.reduce((a, s) => a + s.verifier_tokens![0], 0);
    const disagreeing = seqs.reduce((a, s) => a + s.verifier_tokens![1], 0);
    const meanRate = seqs.reduce((a, s) => a + s.verifier_disagreement!, 0) / seqs.length;
    const downweighted = picked.reduce((a, c) => a + (c.verifier_factor !== 1 ? c.sequences.length : 0), 0);
    const run = await getRun(runId);
    const v = run.summary!.verifier!;
    assert.equal(v.present, true);
    assert.equal(Number(v.sequences), seqs.length);
    assert.equal(Number(v.tokens), tokens);
    assert.equal(Number(v.disagreeing_tokens), disagreeing);
    assert.ok(Math.abs(v.token_disagreement - disagreeing / tokens) < 1e-12);
    assert.ok(Math.abs(v.mean_disagreement - meanRate) < 1e-12, `${v.mean_disagreement} vs ${meanRate}`);
    assert.equal(Number(v.downweighted_sequences), downweighted);
    assert.equal(downweighted > 0, pack === 'verifier-downweight-on');
    const http = (await (await fetch(httpUrl(server, `/v1/runs/${runId}`))).json()) as { verifier: { tokens: number; disagreeing_tokens: number } };
    assert.equal(http.verifier.tokens, tokens);
    assert.equal(http.verifier.disagreeing_tokens, disagreeing);
    const metrics = await (await fetch(httpUrl(server, '/metrics'))).text();
    const count = metrics.match(new RegExp(`^mechreward_verifier_disagreement_count\\{pack="${pack}"\\} (\\d+)`, 'm'));
    assert.ok(count && Number(count[1]) >= seqs.length, `no disagreement histogram for ${pack}`);
  }
  // A run on a pack without a verifier reports none.
  const plain = cases.find((c) => c.pack === 'direction-f32')!;
  const sequences = plain.sequences.map((s) => ({ activations: readFileSync(path.join(PARITY_DIR, s.file)), dtype: WIRE_DTYPE[plain.dtype], num_tokens: s.num_tokens, score_from: s.score_from }));
  assert.ok((await score(client, { pack: plain.pack, sequences, run_id: 'no-verifier' })).ok);
  assert.equal((await getRun('no-verifier')).summary!.verifier!.present, false);
});
