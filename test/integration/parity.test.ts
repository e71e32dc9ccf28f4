// Parity: per-token and pooled rewards from the real server (real gRPC client, port 0) equal the independent
// float64 numpy reference (scripts/parity/reference.py) within 1e-4 relative, for every architecture the loader
// reads (TopK, ReLU, JumpReLU, gated, AbsTopK, group-max, SAELens and sparsify transcoders, log_threshold), both
// encode modes, every pooling and f32 / f16 / bf16 inputs, on fixtures that include near-ties at the k-th
// value (or a group's maximum), exact ties between twin features, rows 1e-4 from a gate or JumpReLU threshold,
// negative AbsTopK values, rows with fewer than k positive pre-activations, high-norm, huge and denormal rows.
// Relative to what: each token's `scale` = sum_f |w_f * f_f(x_t)| (the reward's own magnitude before
// cancellation), floored at 1e-3 so tokens where nothing fires compare absolutely. Writes test-reports/parity.md.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { PARITY_DIR, PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, score, startTestServer } from '../helpers/server.js';

const REL_TOL = 1e-4;
const SCALE_FLOOR = 1e-3;

interface FixtureSequence {
  file: string;
  num_tokens: number;
  score_from: number;
  row_kinds: string[];
  token_rewards: number[];
  token_scales: number[];
  reward: number;
  reward_scale: number;
  flags: { name: string; value: number }[];
}

interface FixtureCase {
  pack: string;
  dtype: 'f32' | 'f16' | 'bf16';
  d_model: number;
  sequences: FixtureSequence[];
}

const cases = (JSON.parse(readFileSync(path.join(PARITY_DIR, 'cases.json'), 'utf8')) as { cases: FixtureCase[] }).cases;
const WIRE_DTYPE = { f32: 'DTYPE_F32', f16: 'DTYPE_F16', bf16: 'DTYPE_BF16' } as const;

let server: RunningServer;
let client: RewardServiceClient;
const report: string[] = ['| pack | dtype | sequences | tokens | near-tie rows | few-positive rows | high-norm rows | other edge rows | max rel. error (token) | max rel. error (pooled) |', '|---|---|---|---|---|---|---|---|---|---|'];
// Row kinds of the SAE variants' fixtures, each at one of the encode's discontinuities or number-format edges.
const EDGE_KINDS = ['exact_tie', 'gate_edge', 'near_threshold', 'negative', 'denormal', 'huge'];
const VARIANT_PACKS = ['gated-saelens', 'abstopk-saelens', 'abstopk-selected', 'groupmax-sparsify', 'topk-sparsify-transcode', 'jumprelu-skip-transcoder', 'jumprelu-log-threshold'];

before(async () => {
  server = await startTestServer(PARITY_PACKS);
  client = grpcClient(server.grpcPort);
});

after(async () => {
  client.close();
  await server.close();
  const dir = path.resolve('test-reports');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'parity.md'), `${report.join('\n')}\n`);
});

test('the fixtures cover every architecture, both encode modes, all dtypes and the nasty rows', () => {
  const packs = new Set(cases.map((c) => c.pack));
  assert.ok(packs.size >= 15, `only ${packs.size} fixture packs`);
  for (const pack of VARIANT_PACKS) assert.ok(packs.has(pack), `no ${pack} fixtures`);
  assert.deepEqual(new Set(cases.map((c) => c.dtype)), new Set(['f32', 'f16', 'bf16']));
  const kinds = cases.flatMap((c) => c.sequences.flatMap((s) => s.row_kinds));
  for (const kind of ['near_tie', 'few_positive', 'high_norm', 'random', ...EDGE_KINDS]) assert.ok(kinds.includes(kind), `no ${kind} rows`);
});

for (const c of cases) {
  test(`parity ${c.pack} ${c.dtype}`, async () => {
    const sequences = c.sequences.map((s) => ({
      activations: readFileSync(path.join(PARITY_DIR, s.file)),
      dtype: WIRE_DTYPE[c.dtype],
      num_tokens: s.num_tokens,
      score_from: s.score_from,
    }));
    const out = await score(client, { pack: c.pack, sequences });
    assert.ok(out.ok, out.details);
    const results = out.response!.results;
    assert.equal(results.length, c.sequences.length);
    let worstToken = 0;
    let worstPooled = 0;
    c.sequences.forEach((s, i) => {
      const got = results[i]!;
      assert.equal(got.token_rewards.length, s.num_tokens);
      for (let t = 0; t < s.num_tokens; t++) {
        const err = Math.abs(got.token_rewards[t]! - s.token_rewards[t]!) / Math.max(s.token_scales[t]!, SCALE_FLOOR);
        worstToken = Math.max(worstToken, err);
        assert.ok(err <= REL_TOL, `seq ${i} token ${t} (${s.row_kinds[t] ?? ''}): got ${got.token_rewards[t]}, reference ${s.token_rewards[t]} (rel. error ${err.toExponential(2)})`);
        if (t < s.score_from) assert.equal(got.token_rewards[t], 0, 'prompt tokens get reward 0');
      }
      const pooledErr = Math.abs(got.reward - s.reward) / Math.max(s.reward_scale, SCALE_FLOOR);
      worstPooled = Math.max(worstPooled, pooledErr);
      assert.ok(pooledErr <= REL_TOL, `seq ${i} pooled: got ${got.reward}, reference ${s.reward} (rel. error ${pooledErr.toExponential(2)})`);
      assert.deepEqual(got.flags.map((f) => f.name).sort(), s.flags.map((f) => f.name).sort(), `seq ${i} canary flags`);
      for (const f of s.flags) {
        const g = got.flags.find((x) => x.name === f.name)!;
        assert.ok(Math.abs(g.value - f.value) <= REL_TOL * Math.max(Math.abs(f.value), SCALE_FLOOR), `seq ${i} canary ${f.name}: ${g.value} vs ${f.value}`);
        assert.ok(g.reason.length > 0);
      }
    });
    const kinds = c.sequences.flatMap((s) => s.row_kinds.slice(s.score_from));
    const count = (k: string) => kinds.filter((x) => x === k).length;
    const tokens = c.sequences.reduce((a, s) => a + s.num_tokens, 0);
    const edges = EDGE_KINDS.map((k) => [k, count(k)] as const).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ');
    report.push(`| ${c.pack} | ${c.dtype} | ${c.sequences.length} | ${tokens} | ${count('near_tie')} | ${count('few_positive')} | ${count('high_norm')} | ${edges} | ${worstToken.toExponential(2)} | ${worstPooled.toExponential(2)} |`);
  });
}

test('batching invariance: all sequences of a pack in one request equal one request per sequence', async () => {
  const c = cases.find((x) => x.pack === 'topk-saelens' && x.dtype === 'bf16')!;
  const sequences = c.sequences.map((s) => ({ activations: readFileSync(path.join(PARITY_DIR, s.file)), dtype: WIRE_DTYPE[c.dtype], num_tokens: s.num_tokens, score_from: s.score_from }));
  const together = await score(client, { pack: c.pack, sequences });
  for (let i = 0; i < sequences.length; i++) {
    const alone = await score(client, { pack: c.pack, sequences: [sequences[i]!] });
    assert.deepEqual(alone.response!.results[0], together.response!.results[i]);
  }
});
