// The SAE loader's reading of cfg.json, on small folders written here: the three forms that used to be read
// with other math than the library's, refusals by name, F64 narrowing, and the docs' field lists. The
// libraries' own saves are checked end to end by python-shims/tests/test_sae_libraries.py.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { SAELENS_NO_EFFECT_FIELDS, SAELENS_READ_FIELDS, SPARSIFY_NO_EFFECT_FIELDS, SPARSIFY_READ_FIELDS } from '../../src/packs/sae-fields.js';
import { loadSae } from '../../src/packs/sae.js';
import { readTensorAsFloat32 } from '../../src/packs/safetensors.js';
import { REPO_ROOT } from '../helpers/fixtures.js';
import { encodeSafetensors, type RawTensor } from '../helpers/safetensors.js';

const D = 4;
const S = 8;

function f32(shape: number[], fill = 0.5): RawTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'F32', shape, bytes: new Uint8Array(new Float32Array(n).fill(fill).buffer) };
}

function writeSae(layout: 'saelens' | 'sparsify', cfg: Record<string, unknown>, tensors: Record<string, RawTensor | { dtype: 'F64'; shape: number[]; bytes: Uint8Array }>): string {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), 'mr-sae-')), 'layers.3');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'cfg.json'), JSON.stringify(cfg));
  writeFileSync(path.join(dir, layout === 'saelens' ? 'sae_weights.safetensors' : 'sae.safetensors'), encodeSafetensors(tensors as Record<string, RawTensor>));
  return dir;
}

const saelensTensors = () => ({ W_enc: f32([D, S]), b_enc: f32([S]), W_dec: f32([S, D]), b_dec: f32([D]) });
const sparsifyTensors = () => ({ 'encoder.weight': f32([S, D]), 'encoder.bias': f32([S]), W_dec: f32([S, D]), b_dec: f32([D]) });

test('sparsify transcode: the encode does not subtract b_dec (SparseCoder.encode)', () => {
  const sae = loadSae(writeSae('sparsify', { d_in: D, num_latents: S, k: 2, activation: 'topk', transcode: true }, sparsifyTensors()));
  assert.equal(sae.applyBDecToInput, false);
  assert.equal(sae.tensors.bDec, undefined);
  assert.match(sae.noReconstruction ?? '', /transcoder/);
  const plain = loadSae(writeSae('sparsify', { d_in: D, num_latents: S, k: 2, activation: 'topk', transcode: false }, sparsifyTensors()));
  assert.equal(plain.applyBDecToInput, true);
});

test('SAELens pre-6.0 cfg: activation_fn_str "topk" with activation_fn_kwargs.k is a TopK SAE', () => {
  const sae = loadSae(writeSae('saelens', { d_in: D, d_sae: S, hook_point: 'blocks.3.hook_resid_post', activation_fn_str: 'topk', activation_fn_kwargs: { k: 3 } }, saelensTensors()));
  assert.equal(sae.architecture, 'topk');
  assert.equal(sae.k, 3);
  assert.equal(sae.hookLayer, 3);
  // From 6.0 on SAELens ignores activation_fn: the architecture decides.
  const v6 = loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'standard', activation_fn: 'topk', metadata: { sae_lens_version: '6.54.12' } }, saelensTensors()));
  assert.equal(v6.architecture, 'relu');
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, activation_fn_str: 'topk' }, saelensTensors())), /activation_fn "topk" without activation_fn_kwargs\.k/);
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, activation_fn_str: 'tanh-relu' }, saelensTensors())), /activation_fn "tanh-relu" is not supported/);
});

test('rescale_acts_by_decoder_norm changes only TopK and AbsTopK encodes, as in SAELens', () => {
  const standard = loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'standard', rescale_acts_by_decoder_norm: true }, saelensTensors()));
  assert.equal(standard.rescaleByDecoderNorm, false);
  const topk = loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'topk', k: 2, rescale_acts_by_decoder_norm: true }, saelensTensors()));
  assert.equal(topk.rescaleByDecoderNorm, true);
});

test('unknown cfg fields, unknown tensors and refused variants fail loading with their names', () => {
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'standard', brand_new_option: 1 }, saelensTensors())), /field brand_new_option is not understood/);
  assert.throws(() => loadSae(writeSae('sparsify', { d_in: D, num_latents: S, k: 2, normalize_encoder: true }, sparsifyTensors())), /field normalize_encoder is not understood/);
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'standard' }, { ...saelensTensors(), scaling_factor: f32([S], 1) })), /tensor scaling_factor is not part of a SAELens standard/);
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'temporal' }, saelensTensors())), /architecture "temporal" is refused/);
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, normalize_activations: 'covariance_whitening' }, saelensTensors())), /normalize_activations "covariance_whitening" is not supported/);
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'transcoder', d_out: D }, saelensTensors())), /apply_b_dec_to_input must be false/);
  assert.throws(() => loadSae(writeSae('sparsify', { d_in: D, num_latents: S, k: 3, activation: 'groupmax' }, sparsifyTensors())), /groupmax" needs num_latents \(8\) divisible by k \(3\)/);
  assert.throws(() => loadSae(writeSae('saelens', { d_in: D, d_sae: S, architecture: 'toString' }, saelensTensors())), /architecture "toString" is not supported/);
});

test('F64 weights are narrowed to float32 by round-to-nearest-even', () => {
  const wide = new Float64Array(D * S).fill(0.1);
  wide[1] = 1e300; // beyond float32: becomes Infinity, which the engine refuses
  const dir = writeSae('saelens', { d_in: D, d_sae: S, architecture: 'standard', dtype: 'float64' }, { ...saelensTensors(), W_enc: { dtype: 'F64', shape: [D, S], bytes: new Uint8Array(wide.buffer) } });
  const sae = loadSae(dir);
  assert.equal(sae.storedTensors.W_enc!.dtype, 'F64');
  const read = readTensorAsFloat32(sae.weightsPath, sae.tensors.encoder);
  assert.equal(read[0], Math.fround(0.1));
  assert.equal(read[1], Infinity);
});

test('docs/packs.md lists exactly the cfg fields the loader reads and those with no effect', () => {
  const doc = readFileSync(path.join(REPO_ROOT, 'docs/packs.md'), 'utf8');
  const row = (layout: string) => doc.split('\n').find((l) => l.startsWith(`| ${layout} | \`d_in\``))!.split('|').slice(2, 4);
  const names = (cell: string) => new Set([...cell.matchAll(/`([a-z_0-9]+)`/g)].map((m) => m[1]!));
  for (const [layout, read, noEffect] of [['SAELens', SAELENS_READ_FIELDS, SAELENS_NO_EFFECT_FIELDS], ['sparsify', SPARSIFY_READ_FIELDS, SPARSIFY_NO_EFFECT_FIELDS]] as const) {
    const [readCell, noEffectCell] = row(layout);
    const documentedRead = names(readCell!);
    for (const f of read) assert.ok(documentedRead.has(f), `${layout}: docs/packs.md does not list ${f} as read`);
    assert.deepEqual([...names(noEffectCell!)].sort(), [...noEffect].sort(), `${layout}: no-effect fields differ from src/packs/sae-fields.ts`);
  }
});
