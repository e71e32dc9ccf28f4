// Stage gate 1 as a tool and as a rule the server enforces. Statistics are checked against scipy; the gate's
// scores against the running server's own Score answers for the same activations.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import { bootstrapSpearmanCi, spearman } from '../../src/gate/stats.js';
import type { ListPacksResponse__Output } from '../../src/generated/mechreward/v1/ListPacksResponse.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { encodeSafetensors, toHalfBits } from '../helpers/safetensors.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const execFileAsync = promisify(execFile);
const BIN = path.join(REPO_ROOT, 'bin/mechreward.js');
const D_MODEL = 64;

function scipySpearman(x: number[], y: number[]): Promise<{ rho: number; p: number }> {
  const code = 'import json,sys; from scipy.stats import spearmanr; d=json.load(sys.stdin); r=spearmanr(d["x"], d["y"]); print(json.dumps({"rho": float(r.statistic), "p": float(r.pvalue)}))';
  return new Promise((resolve, reject) => {
    const child = execFile('python3', ['-c', code], (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout) as { rho: number; p: number })));
    child.stdin!.end(JSON.stringify({ x, y }));
  });
}

test('spearman rho and p equal scipy.stats.spearmanr, with heavy ties', async () => {
  let seed = 3;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (const [n, noise] of [[10, 6], [57, 6], [250, 6], [480, 2]] as const) {
    const x = Array.from({ length: n }, () => Math.round(rand() * 40) / 4); // many ties
    const y = x.map((v) => (v + rand() * noise > 4 + noise / 2 ? 1 : 0)); // the last case has p far below 1e-20
    const ours = spearman(x, y);
    const ref = await scipySpearman(x, y);
    assert.ok(Math.abs(ours.rho - ref.rho) < 1e-12, `n=${n}: rho ${ours.rho} vs scipy ${ref.rho}`);
    assert.ok(Math.abs(ours.p - ref.p) <= 1e-6 * ref.p + 1e-300, `n=${n}: p ${ours.p} vs scipy ${ref.p}`);
    const a = bootstrapSpearmanCi(x, y, { seed: 1 });
    const b = bootstrapSpearmanCi(x, y, { seed: 1 });
    assert.deepEqual(a, b, 'the bootstrap is reproducible');
    assert.ok(a.ci[0] <= ours.rho && ours.rho <= a.ci[1], `rho ${ours.rho} inside [${a.ci}]`);
  }
});

let root: string;
let packDir: string;
let heldOutFile: string;
let serverRewards: number[];
let labels: number[];

/** 120 held-out responses of random f16 activations; labels are set from the server's own scores (+ noise). */
before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-gate-'));
  packDir = path.join(root, 'gated');
  cpSync(path.join(PARITY_PACKS, 'topk-saelens'), packDir, { recursive: true });
  const n = 120;
  const responses: Array<{ id: string; offset: number; num_tokens: number; score_from: number; correct: number }> = [];
  const halves: number[] = [];
  let seed = 11;
  const rand = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < n; i++) {
    const numTokens = 6 + (i % 9);
    responses.push({ id: `q${i}`, offset: halves.length / D_MODEL, num_tokens: numTokens, score_from: 2 + (i % 3), correct: 0 });
    for (let j = 0; j < numTokens * D_MODEL; j++) halves.push(toHalfBits((rand() - 0.5) * 6));
  }
  const bytes = new Uint8Array(new Uint16Array(halves).buffer);
  const server = await startTestServer(root);
  const client = grpcClient(server.grpcPort);
  const out = await score(client, {
    pack: 'gated',
    sequences: responses.map((r) => ({ activations: Buffer.from(bytes.buffer, r.offset * D_MODEL * 2, r.num_tokens * D_MODEL * 2), dtype: 'DTYPE_F16', num_tokens: r.num_tokens, score_from: r.score_from })),
  });
  client.close();
  await server.close();
  assert.ok(out.ok, out.details);
  serverRewards = out.response!.results.map((r) => r.reward);
  const sorted = [...serverRewards].sort((a, b) => a - b);
  const median = sorted[n >> 1]!;
  // Correct when the score is above the median, with 15 % of labels flipped so rho is high but not 1.
  labels = serverRewards.map((r) => ((r > median) !== (rand() < 0.15) ? 1 : 0));
  responses.forEach((r, i) => (r.correct = labels[i]!));
  mkdirSync(path.join(packDir, 'heldout'));
  heldOutFile = path.join(packDir, 'heldout', 'heldout.safetensors');
  writeFileSync(heldOutFile, encodeSafetensors({ activations: { dtype: 'F16', shape: [halves.length / D_MODEL, D_MODEL], bytes } }, { responses: JSON.stringify(responses), task: 'test' }));
});

after(() => rmSync(root, { recursive: true, force: true }));

test('`mechreward gate g1 --json` reports the rho of the server scores vs correctness and writes the validation block', async () => {
  const { stdout } = await execFileAsync(process.execPath, [BIN, 'gate', 'g1', '--pack', packDir, '--data', heldOutFile, '--json']);
  const result = JSON.parse(stdout) as { rho: number; n: number; p: number; ci: [number, number] };
  assert.deepEqual(Object.keys(result).sort(), ['ci', 'n', 'p', 'rho']);
  const ref = await scipySpearman(serverRewards, labels);
  assert.equal(result.n, 120);
  assert.ok(Math.abs(result.rho - ref.rho) < 1e-9, `gate rho ${result.rho} vs scipy on server scores ${ref.rho}`);
  assert.ok(Math.abs(result.p - ref.p) <= 1e-9 * Math.max(1, ref.p) + 1e-15);
  assert.ok(result.ci[0] < result.rho && result.rho < result.ci[1]);
  const block = (JSON.parse(readFileSync(path.join(packDir, 'pack.json'), 'utf8')) as { validation: Record<string, unknown> }).validation;
  assert.equal(block.n, 120);
  assert.equal(block.rho, result.rho);
  assert.equal(block.verdict, result.rho >= 0.3 ? 'PASS' : 'FAIL');
  assert.equal(block.verdict, 'PASS');
  assert.equal(block.data, 'heldout/heldout.safetensors');
  assert.equal(block.data_sha256, createHash('sha256').update(readFileSync(heldOutFile)).digest('hex'));
  assert.equal(block.encode, 'topk');
  assert.match(String(block.date), /^\d{4}-\d{2}-\d{2}$/);
  // The monitor is calibrated on the same held-out responses: an FVU bound flagging about 1 % of them.
  const monitor = (JSON.parse(readFileSync(path.join(packDir, 'pack.json'), 'utf8')) as { monitor: { fvu_bound: number; baseline: { flagged: number; n: number } } }).monitor;
  assert.ok(monitor.fvu_bound > 0 && Number.isFinite(monitor.fvu_bound));
  assert.equal(monitor.baseline.n, 120);
  assert.ok(monitor.baseline.flagged >= 1 && monitor.baseline.flagged < 120, `baseline ${monitor.baseline.flagged}/120`);

  // Rerun with no other argument: the block names its data; the result is the same.
  const again = await execFileAsync(process.execPath, [BIN, 'gate', 'g1', '--pack', packDir, '--json', '--no-write']);
  assert.equal((JSON.parse(again.stdout) as { rho: number }).rho, result.rho);
  const table = await execFileAsync(process.execPath, [BIN, 'gate', 'g1', '--pack', packDir, '--no-write']);
  assert.match(table.stdout, /gated\s+120\s+\d+\s+0\.\d{3}\s+0\.\d{4}.*PASS/);
  assert.match(table.stdout, /monitor calibration: fvu_bound \d+\.\d{4} \(quantile 0\.99/);
});

test('serve enforces stage gate 1 unless --allow-unvalidated, and says which pack and why', async (t) => {
  const only = mkdtempSync(path.join(os.tmpdir(), 'mechreward-enforce-'));
  t.after(() => rmSync(only, { recursive: true, force: true }));
  const original = readFileSync(path.join(packDir, 'pack.json'), 'utf8');
  cpSync(packDir, path.join(only, 'gated'), { recursive: true });
  const dir = path.join(only, 'gated');

  // A validated pack is served without the flag, and ListPacks and /metrics show its validation.
  const s = await startTestServer(only, { allowUnvalidated: false });
  const c = grpcClient(s.grpcPort);
  const listed = await new Promise<ListPacksResponse__Output>((resolve, reject) => c.ListPacks({}, (err, r) => (err ? reject(err) : resolve(r!))));
  const v = listed.packs[0]!.validation!;
  assert.equal(v.passes, true);
  assert.equal(v.n, 120);
  assert.ok(v.ci_low < v.spearman_rho && v.spearman_rho < v.ci_high);
  assert.equal(v.data_sha256.length, 64);
  const metrics = await (await fetch(httpUrl(s, '/metrics'))).text();
  assert.match(metrics, /mechreward_pack_validated\{pack="gated"\} 1/);
  assert.match(metrics, /mechreward_pack_validation_rho\{pack="gated"\} 0\.\d+/);
  c.close();
  await s.close();

  const refused = async (why: RegExp) => {
    await assert.rejects(startTestServer(only, { allowUnvalidated: false }), (err: Error) => {
      assert.match(err.message, /have not passed stage gate 1/);
      assert.match(err.message, /gated: /);
      assert.match(err.message, why);
      return true;
    });
  };
  const restore = () => writeFileSync(path.join(dir, 'pack.json'), original);

  editValidationIn(dir, (b) => (b.rho = 0.12));
  await refused(/stage gate 1 failed: held-out rho 0\.120 < 0\.3/);
  restore();
  editValidationIn(dir, (b) => delete b.data_sha256);
  await refused(/no data_sha256/);
  restore();
  editValidationIn(dir, (b) => delete b.n);
  await refused(/has no n/);
  restore();
  editValidationIn(dir, (b) => (b.encode = 'selected_relu'));
  await refused(/validated with encode selected_relu but serves topk/);
  restore();
  const data = readFileSync(path.join(dir, 'heldout/heldout.safetensors'));
  data[data.length - 1] ^= 1;
  writeFileSync(path.join(dir, 'heldout/heldout.safetensors'), data);
  await refused(/changed since validation/);
  editValidationIn(dir, (b) => {
    for (const k of Object.keys(b)) delete b[k];
  });
  const json = JSON.parse(readFileSync(path.join(dir, 'pack.json'), 'utf8')) as Record<string, unknown>;
  delete json.validation;
  writeFileSync(path.join(dir, 'pack.json'), JSON.stringify(json));
  await refused(/no validation block; run `mechreward gate g1 --pack/);

  // --allow-unvalidated serves it, and says so in ListPacks and /metrics.
  const loose = await startTestServer(only, { allowUnvalidated: true });
  const lc = grpcClient(loose.grpcPort);
  const l = await new Promise<ListPacksResponse__Output>((resolve, reject) => lc.ListPacks({}, (err, r) => (err ? reject(err) : resolve(r!))));
  assert.equal(l.packs[0]!.validation!.passes, false);
  assert.match(l.packs[0]!.validation!.problem, /no validation block/);
  assert.match(await (await fetch(httpUrl(loose, '/metrics'))).text(), /mechreward_pack_validated\{pack="gated"\} 0/);
  lc.close();
  await loose.close();
});

function editValidationIn(dir: string, edit: (v: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'pack.json');
  const json = JSON.parse(readFileSync(file, 'utf8')) as { validation: Record<string, unknown> };
  edit(json.validation);
  writeFileSync(file, JSON.stringify(json));
}

