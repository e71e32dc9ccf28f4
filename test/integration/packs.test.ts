// Malformed packs and SAE files are reported at start-up with their path, never at the first request:
// `mechreward packs` lists them and exits 1, and `serve` refuses to start.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { planEngine } from '../../src/engine/plan.js';
import { loadPackDirectory } from '../../src/packs/registry.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { startTestServer } from '../helpers/server.js';

const SOURCE = path.join(PARITY_PACKS, 'topk-saelens');
const tmpRoots: string[] = [];
after(() => tmpRoots.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A packs dir holding one copy of the good topk-saelens pack, broken by `breakIt`. */
function brokenPack(breakIt: (packDir: string) => void): { root: string; packDir: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-packs-'));
  tmpRoots.push(root);
  const packDir = path.join(root, 'broken');
  cpSync(SOURCE, packDir, { recursive: true });
  breakIt(packDir);
  return { root, packDir };
}

function weightsFile(packDir: string): string {
  return path.join(packDir, 'sae', 'sae_weights.safetensors');
}

function rewriteHeader(packDir: string, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): void {
  const file = weightsFile(packDir);
  const bytes = readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  // Same data section, new header: only the header's claims change.
  const text = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(text.length), 0);
  writeFileSync(file, Buffer.concat([length, text, bytes.subarray(8 + n)]));
}

function editPackJson(packDir: string, edit: (json: Record<string, unknown>) => void): void {
  const file = path.join(packDir, 'pack.json');
  const json = JSON.parse(readFileSync(file, 'utf8'));
  edit(json);
  writeFileSync(file, JSON.stringify(json));
}

const broken: Array<[string, (dir: string) => void, RegExp]> = [
  ['truncated safetensors', (d) => truncateSync(weightsFile(d), 5000), /sae_weights\.safetensors: .*(past the end|truncated)/],
  ['file shorter than the header length field', (d) => truncateSync(weightsFile(d), 4), /sae_weights\.safetensors: file is 4 bytes/],
  ['header length pointing past the file', (d) => { const b = readFileSync(weightsFile(d)); b.writeBigUInt64LE(BigInt(b.length), 0); writeFileSync(weightsFile(d), b); }, /header length \d+ runs past the end/],
  ['lying header: data_offsets past the data', (d) => rewriteHeader(d, (h) => { const t = h.b_dec!; const len = t.data_offsets[1]! - t.data_offsets[0]!; t.data_offsets = [10_000_000, 10_000_000 + len]; }), /tensor b_dec: data_offsets end \d+ is past the data section/],
  ['lying header: overlapping tensors', (d) => rewriteHeader(d, (h) => { h.b_dec!.data_offsets = [h.b_enc!.data_offsets[0]!, h.b_enc!.data_offsets[0]! + (h.b_dec!.data_offsets[1]! - h.b_dec!.data_offsets[0]!)]; }), /overlap/],
  ['lying header: byte count disagrees with shape', (d) => rewriteHeader(d, (h) => { h.b_enc!.shape = [h.b_enc!.shape[0]! * 2]; }), /tensor b_enc: data_offsets .* hold \d+ bytes/],
  ['wrong tensor shape', (d) => { const c = JSON.parse(readFileSync(path.join(d, 'sae/cfg.json'), 'utf8')); c.d_sae = 256; writeFileSync(path.join(d, 'sae/cfg.json'), JSON.stringify(c)); }, /tensor (W_enc|W_dec) has shape \[(64, 512|512, 64)\], expected \[(64, 256|256, 64)\]/],
  ['feature id >= d_sae', (d) => editPackJson(d, (j) => { (j.features as Array<{ id: number }>)[0]!.id = 512; }), /feature id 512 is out of range .*d_sae = 512/],
  ['canary feature >= d_sae', (d) => editPackJson(d, (j) => { (j.canaries as Array<{ feature: number }>)[0]!.feature = 9999; }), /canary .* names feature 9999, out of range/],
  ['pack.json not JSON', (d) => writeFileSync(path.join(d, 'pack.json'), '{"schema": '), /pack\.json: cannot read JSON/],
  ['unknown architecture', (d) => { const c = JSON.parse(readFileSync(path.join(d, 'sae/cfg.json'), 'utf8')); c.architecture = 'mystery'; writeFileSync(path.join(d, 'sae/cfg.json'), JSON.stringify(c)); }, /cfg\.json: architecture "mystery" is not supported/],
  ['unknown encode mode', (d) => editPackJson(d, (j) => { j.encode = 'approximate'; }), /pack\.json: encode must be "topk", "topk_int8" or "selected_relu"/],
  ['duplicate feature', (d) => editPackJson(d, (j) => { const f = j.features as Array<{ id: number }>; f[1]!.id = f[0]!.id; }), /lists feature \d+ twice/],
  ['missing SAE folder', (d) => rmSync(path.join(d, 'sae'), { recursive: true }), /no cfg\.json/],
];

/** A broken copy of a direction (or verifier) pack from the linear parity fixtures. */
function brokenLinear(source: string, breakIt: (packDir: string) => void): { root: string; packDir: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-packs-'));
  tmpRoots.push(root);
  const packDir = path.join(root, 'broken');
  cpSync(path.join(PARITY_PACKS, source), packDir, { recursive: true });
  cpSync(path.join(PARITY_PACKS, 'probe-linear-f16'), path.join(root, 'probe-linear-f16'), { recursive: true });
  breakIt(packDir);
  return { root, packDir };
}

function writeLinear(file: string, weightShape: number[], biasShape: number[], value = 0.5): void {
  const count = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const w = new Float32Array(count(weightShape)).fill(value);
  const b = new Float32Array(count(biasShape)).fill(0.1);
  const header = { weight: { dtype: 'F32', shape: weightShape, data_offsets: [0, w.byteLength] }, bias: { dtype: 'F32', shape: biasShape, data_offsets: [w.byteLength, w.byteLength + b.byteLength] } };
  const text = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length), 0);
  writeFileSync(file, Buffer.concat([len, text, Buffer.from(w.buffer), Buffer.from(b.buffer)]));
}

const brokenLinearPacks: Array<[string, string, (dir: string) => void, RegExp]> = [
  ['direction file missing', 'direction-f32', (d) => rmSync(path.join(d, 'direction.safetensors')), /direction\.safetensors: file not found/],
  ['direction weight not a vector', 'direction-f32', (d) => writeLinear(path.join(d, 'direction.safetensors'), [8, 8], [1]), /tensor weight has shape \[8, 8\], expected \[d_model\]/],
  ['direction bias of the wrong length', 'direction-f32', (d) => writeLinear(path.join(d, 'direction.safetensors'), [64], [2]), /tensor bias has shape \[2\], expected \[1\]/],
  ['verifier probe of another width', 'verifier-downweight-off', (d) => writeLinear(path.join(d, 'verifier.safetensors'), [32], [1]), /verifier\.probe .* has d_model 32, the pack reads d_model 64/],
  ['verifier folder that is not a probe pack', 'verifier-gate-direction', (d) => editPackJson(d, (j) => { j.verifier = { probe: '.', mode: 'token_gate' }; }), /verifier\.probe must name a probe pack, this one is a direction pack/],
];

for (const [name, source, breakIt, expected] of brokenLinearPacks) {
  test(`broken ${source} pack is reported at load with its path: ${name}`, () => {
    const { root, packDir } = brokenLinear(source, breakIt);
    const problems = loadPackDirectory(root).problems.filter((p) => p.pack === 'broken');
    assert.equal(problems.length, 1, JSON.stringify(problems));
    assert.match(problems[0]!.message, expected);
    assert.ok(problems[0]!.message.includes(packDir), problems[0]!.message);
  });
}

test('a direction whose weights hold a NaN is refused when the engine loads it, naming the file', async () => {
  const { root, packDir } = brokenLinear('direction-f32', (d) => writeLinear(path.join(d, 'direction.safetensors'), [64], [1], NaN));
  await assert.rejects(startTestServer(root, { allowUnvalidated: true }), (err: Error) => err.message.includes(path.join(packDir, 'direction.safetensors')) && /non-finite value at element 0/.test(err.message));
});

for (const [name, breakIt, expected] of broken) {
  test(`broken pack is reported at load with its path: ${name}`, () => {
    const { root, packDir } = brokenPack(breakIt);
    const catalogue = loadPackDirectory(root);
    assert.equal(catalogue.packs.size, 0);
    assert.equal(catalogue.problems.length, 1);
    const message = catalogue.problems[0]!.message;
    assert.match(message, expected);
    assert.ok(message.includes(packDir), `message should name the path: ${message}`);
  });
}

test('serve refuses to start with a broken pack and names it', async () => {
  const { root, packDir } = brokenPack((d) => truncateSync(weightsFile(d), 5000));
  await assert.rejects(startTestServer(root), (err: Error) => err.message.includes(packDir) && err.message.includes('broken'));
});

test('`mechreward packs DIR` lists good packs, reports broken ones with paths and exits 1', () => {
  const { root, packDir } = brokenPack((d) => truncateSync(weightsFile(d), 5000));
  cpSync(SOURCE, path.join(root, 'good'), { recursive: true });
  const out = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/mechreward.js'), 'packs', root], { encoding: 'utf8' });
  assert.equal(out.status, 1, out.stderr);
  assert.match(out.stdout, /^good\s+topk\s+64x512\s+16\s+topk\s+mean/m);
  assert.ok(out.stdout.includes(`BROKEN broken: ${packDir}`), out.stdout);
  const ok = spawnSync(process.execPath, [path.join(REPO_ROOT, 'bin/mechreward.js'), 'packs', PARITY_PACKS, '--json'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  const listed = JSON.parse(ok.stdout) as { packs: { name: string; schema: string; sae_format: string; kind: string; architecture: string }[] };
  const schemas = new Set(listed.packs.map((p) => p.schema));
  assert.deepEqual(schemas, new Set(['mechreward.pack/v1', 'catalog-a', 'catalog-b']));
  // Direction and probe packs have no SAE: no sae_format, and their kind as their architecture.
  assert.deepEqual(new Set(listed.packs.map((p) => p.sae_format)), new Set(['saelens', 'sparsify', '']));
  assert.deepEqual(new Set(listed.packs.map((p) => p.kind)), new Set(['sae', 'direction', 'probe']));
  for (const p of listed.packs) assert.equal(p.sae_format === '', p.kind !== 'sae', p.name);
  assert.equal(listed.packs.find((p) => p.name === 'direction-f32')!.architecture, 'direction');
});

test('packs that share one SAE file share one engine session (weights held once)', () => {
  const catalogue = loadPackDirectory(PARITY_PACKS);
  const a = catalogue.packs.get('topk-saelens')!;
  const b = catalogue.packs.get('topk-saelens-selected')!;
  assert.equal(a.sae!.key, b.sae!.key);
  assert.strictEqual(a.sae, b.sae, 'one SaeSpec object for both packs');
  // Two exact-TopK packs on one SAE: one full session.
  const twin = { ...a, name: 'topk-saelens-twin' };
  const plan = planEngine([a, twin]);
  assert.equal(plan.models.length, 1);
  assert.equal(plan.packs[0]!.modelId, plan.packs[1]!.modelId);
});
