// The opt-in `topk_int8` encode mode against its independent float64 reference (scripts/parity/int8_reference.py,
// run by `npm run fixtures`): the real smollm2-arith features on real SmolLM2 held-out residuals, plus the
// synthetic parity SAEs (decoder-norm rescale, sparsify's transposed encoder) and nasty rows (high norm, one
// outlier per block, tiny). Every token the reference does not mark ambiguous (a float32 rounding flip of an
// input could move a pack feature across the TopK boundary) must match within its tolerance; the test also
// proves the server really ran the int8 path (it matches int8 where int8 and exact float64 disagree).
// Writes test-reports/int8.md with the agreement of int8 and exact TopK on the real held-out file.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { planEngine } from '../../src/engine/plan.js';
import { engineKey, loadPackDirectory } from '../../src/packs/registry.js';
import type { RunningServer } from '../../src/server.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { grpcClient, score, startTestServer } from '../helpers/server.js';

const INT8_DIR = path.join(REPO_ROOT, 'test/fixtures/int8');

interface Int8Sequence {
  file: string;
  num_tokens: number;
  score_from: number;
  kind: string;
  token_rewards: number[];
  token_tolerance: number[];
  ambiguous: boolean[];
  exact_token_rewards: number[];
}

const fixtures = JSON.parse(readFileSync(path.join(INT8_DIR, 'cases.json'), 'utf8')) as { block: number; cases: { pack: string; sequences: Int8Sequence[] }[] };
const agreement = JSON.parse(readFileSync(path.join(INT8_DIR, 'agreement.json'), 'utf8')) as Record<string, number | string>;

let server: RunningServer;
let client: RewardServiceClient;
const report = ['| pack | sequences | tokens compared | ambiguous (skipped) | tokens where int8 ≠ exact | worst error / tolerance |', '|---|---|---|---|---|---|'];

before(async () => {
  // The int8 fixture packs point at the shipped pack's real SAE, outside their own packs directory.
  server = await startTestServer(path.join(INT8_DIR, 'packs'), { allowPacksOutside: true });
  client = grpcClient(server.grpcPort);
});

after(async () => {
  client.close();
  await server.close();
  const dir = path.resolve('test-reports');
  mkdirSync(dir, { recursive: true });
  const stats = Object.entries(agreement).map(([k, v]) => `| ${k} | ${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toPrecision(4)) : v} |`);
  writeFileSync(path.join(dir, 'int8.md'), `${report.join('\n')}\n\nint8 vs exact TopK on the real held-out file:\n\n| figure | value |\n|---|---|\n${stats.join('\n')}\n`);
});

for (const c of fixtures.cases) {
  test(`topk_int8 parity ${c.pack}`, async () => {
    const sequences = c.sequences.map((s) => ({ activations: readFileSync(path.join(INT8_DIR, s.file)), dtype: 'DTYPE_F32' as const, num_tokens: s.num_tokens, score_from: s.score_from }));
    const out = await score(client, { pack: c.pack, sequences });
    assert.ok(out.ok, out.details);
    let compared = 0;
    let skipped = 0;
    let differsFromExact = 0;
    let worst = 0;
    c.sequences.forEach((s, i) => {
      const got = out.response!.results[i]!.token_rewards;
      for (let t = s.score_from; t < s.num_tokens; t++) {
        if (s.ambiguous[t]) {
          skipped++;
          continue;
        }
        const err = Math.abs(got[t]! - s.token_rewards[t]!);
        const tol = s.token_tolerance[t]!;
        worst = Math.max(worst, err / tol);
        assert.ok(err <= tol, `seq ${i} (${s.kind}) token ${t}: got ${got[t]}, int8 reference ${s.token_rewards[t]}, tolerance ${tol.toExponential(2)}`);
        compared++;
        if (Math.abs(s.exact_token_rewards[t]! - s.token_rewards[t]!) > 2 * tol) differsFromExact++;
      }
    });
    assert.ok(skipped <= compared / 50, `${skipped} ambiguous of ${compared} tokens: the fixture is too ambiguous to test anything`);
    report.push(`| ${c.pack} | ${c.sequences.length} | ${compared} | ${skipped} | ${differsFromExact} | ${worst.toFixed(3)} |`);
    if (c.pack === 'arith-int8') {
      // On real residuals int8 visibly differs from exact float64 somewhere; the server matched int8 there, so it
      // did not silently serve the float32 Gemm.
      assert.ok(differsFromExact > 0, 'no token where int8 and exact differ: the fixture cannot tell the modes apart');
    }
  });
}

test('ListPacks reports the int8 encode mode', async () => {
  const packs = await new Promise<{ packs: { name: string; encode_mode: string }[] }>((resolve, reject) =>
    client.ListPacks({}, (err, res) => (err ? reject(err) : resolve(res as never))),
  );
  for (const c of fixtures.cases) assert.equal(packs.packs.find((p) => p.name === c.pack)?.encode_mode, 'topk_int8');
});

test('an int8 pack gets its own session; int8 packs on one SAE share it; a non-TopK SAE is refused', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-int8-'));
  try {
    // Three packs on the one SAE of the parity pack topk-saelens (shared by real path).
    const sae = path.join(PARITY_PACKS, 'topk-saelens', 'sae');
    for (const [name, encode] of [['exact', 'topk'], ['int8-a', 'topk_int8'], ['int8-b', 'topk_int8']] as const) {
      mkdirSync(path.join(root, name));
      const source = JSON.parse(readFileSync(path.join(PARITY_PACKS, 'topk-saelens', 'pack.json'), 'utf8')) as Record<string, unknown>;
      writeFileSync(path.join(root, name, 'pack.json'), JSON.stringify({ ...source, encode, sae }));
    }
    cpSync(path.join(PARITY_PACKS, 'relu-saelens'), path.join(root, 'relu'), { recursive: true });
    const reluFile = path.join(root, 'relu', 'pack.json');
    writeFileSync(reluFile, JSON.stringify({ ...JSON.parse(readFileSync(reluFile, 'utf8')), encode: 'topk_int8' }));
    const catalogue = loadPackDirectory(root);
    assert.equal(catalogue.problems.length, 1);
    assert.match(catalogue.problems[0]!.message, /relu.*encode topk_int8 needs a TopK SAE/s);
    const plan = planEngine(catalogue.packs.values());
    const modelOf = (name: string) => plan.packs.find((p) => p.pack === engineKey(catalogue.packs.get(name)!))!.modelId;
    assert.equal(plan.models.length, 2);
    assert.equal(modelOf('int8-a'), modelOf('int8-b'));
    assert.notEqual(modelOf('exact'), modelOf('int8-a'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
