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
import { grpcClient, score, startTestServer } from '../helpers/server.js';

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
