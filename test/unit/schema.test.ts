import assert from 'node:assert/strict';
import { test } from 'node:test';

import { parsePackJson } from '../../src/packs/schema.js';

test('catalog B: helpful +1 and harmful -1 features, validation summary, metadata claims', () => {
  const spec = parsePackJson('p.json', {
    name: 'qwen/reasoning', model_name: 'Qwen/Qwen3.5-4B',
    helpful_features: [{ feature_id: 5, effect_size: 2.1, mean_correct: 0.1, mean_wrong: 0, weight: 1.0, validated: true }],
    harmful_features: [{ feature_id: 9, effect_size: -2.4, weight: -1.0 }],
    validation: { method: 'Stage Gate 1', n_questions: 100, n_correct: 89, spearman_rho: 0.54, verdict: 'PASS' },
    metadata: { d_model: 2560, d_sae: 40960, k: 128, target_layer: 18 },
  });
  assert.equal(spec.schema, 'catalog-b');
  assert.deepEqual(spec.features.map((f) => [f.id, f.weight]), [[5, 1], [9, -1]]);
  assert.deepEqual(
    { ...spec.validation, ci: [...spec.validation.ci] },
    { present: true, verdict: 'PASS', spearmanRho: 0.54, n: 100, method: 'Stage Gate 1', p: NaN, ci: [NaN, NaN], data: '', dataSha256: '', encode: '', kind: '' },
  );
  assert.deepEqual(spec.claims, { dModel: 2560, dSae: 40960, k: 128 });
  assert.equal(spec.layer, 18);
  assert.equal(spec.encode, 'topk');
  assert.deepEqual(spec.pooling, { method: 'mean' });
});

test('catalog A: weights and activation thresholds', () => {
  const spec = parsePackJson('p.json', { name: 'g', features: [{ feature_id: 1, name: 'a', weight: 0.6, activation_threshold: 0.1, validated: false }] });
  assert.equal(spec.schema, 'catalog-a');
  assert.deepEqual(spec.features, [{ id: 1, weight: 0.6, threshold: 0.1, name: 'a' }]);
  assert.equal(spec.validation.present, false);
});

test('own schema: encode, pooling, canaries and a shared SAE path', () => {
  const spec = parsePackJson('p.json', {
    schema: 'mechreward.pack/v1', name: 'x', sae: '../other/sae', encode: 'selected_relu', pooling: { method: 'last_k', k: 8 },
    features: [{ id: 3, weight: -0.5, threshold: 0.2 }], canaries: [{ name: 'loop', feature: 7, threshold: 1.5 }], synthetic: true,
  });
  assert.equal(spec.saePath, '../other/sae');
  assert.equal(spec.encode, 'selected_relu');
  assert.deepEqual(spec.pooling, { method: 'last_k', k: 8 });
  assert.deepEqual(spec.canaries, [{ name: 'loop', feature: 7, threshold: 1.5 }]);
  assert.equal(spec.synthetic, true);
});

test('schema errors name the file and the field', () => {
  assert.throws(() => parsePackJson('p.json', { schema: 'mechreward.pack/v1', features: [{ id: -1, weight: 1 }] }), /p\.json: features\[0\]\.id must be a non-negative integer/);
  assert.throws(() => parsePackJson('p.json', { schema: 'mechreward.pack/v1', features: [{ id: 1, weight: 'x' }] }), /features\[0\]\.weight must be a finite number/);
  assert.throws(() => parsePackJson('p.json', { schema: 'mechreward.pack/v1', features: [] }), /features must name at least one feature/);
  assert.throws(() => parsePackJson('p.json', { schema: 'mechreward.pack/v1', pooling: { method: 'last_k' }, features: [{ id: 1, weight: 1 }] }), /pooling\.k must be a positive integer/);
  assert.throws(() => parsePackJson('p.json', { helpful_features: [{ feature_id: 1, weight: -1 }] }), /helpful_features\[0\]\.weight must be positive/);
  assert.throws(() => parsePackJson('p.json', { schema: 'v9' }), /schema "v9" is not known/);
  assert.throws(() => parsePackJson('p.json', { name: 'nothing' }), /has no "schema"/);
});

test('pack kinds: sae by default, direction and probe read-outs, the dual verifier with its defaults', () => {
  const own = { schema: 'mechreward.pack/v1', name: 'x' };
  assert.equal(parsePackJson('p.json', { ...own, features: [{ id: 1, weight: 1 }] }).kind, 'sae');
  const dir = parsePackJson('p.json', { ...own, kind: 'direction', direction: { file: 'direction.safetensors' }, pooling: { method: 'last_k', k: 3 } });
  assert.equal(dir.kind, 'direction');
  assert.deepEqual(dir.linear, { file: 'direction.safetensors', type: 'direction', output: 'logit' });
  assert.deepEqual(dir.features, []);
  assert.deepEqual(dir.pooling, { method: 'last_k', k: 3 });
  const probe = parsePackJson('p.json', { ...own, kind: 'probe', probe: { file: 'probe.safetensors', type: 'logistic', output: 'probability' }, verifier: { probe: '../v', mode: 'batch_downweight' } });
  assert.deepEqual(probe.linear, { file: 'probe.safetensors', type: 'logistic', output: 'probability' });
  assert.deepEqual(probe.verifier, { probe: '../v', mode: 'batch_downweight', threshold: 0.3, factor: 0.5 });
  const gated = parsePackJson('p.json', { ...own, features: [{ id: 1, weight: 1 }], verifier: { probe: 'v.safetensors' } });
  assert.equal(gated.verifier!.mode, 'token_gate');
});

test('pack kind errors name the field', () => {
  const own = { schema: 'mechreward.pack/v1', name: 'x' };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ kind: 'lora' }, /p\.json: kind must be one of sae, direction, probe/],
    [{ kind: 'direction' }, /direction must be an object/],
    [{ kind: 'direction', direction: {} }, /direction\.file must name the safetensors file/],
    [{ kind: 'direction', direction: { file: 'd.safetensors', output: 'probability' } }, /direction\.output must be "logit"/],
    [{ kind: 'probe', probe: { file: 'p.safetensors', type: 'svm' } }, /probe\.type must be "linear" or "logistic"/],
    [{ kind: 'probe', probe: { file: 'p.safetensors', type: 'linear', output: 'probability' } }, /probe\.output "probability" needs a logistic probe/],
    [{ kind: 'direction', direction: { file: 'd.safetensors' }, features: [{ id: 1, weight: 1 }] }, /features is for SAE packs; a direction pack has none/],
    [{ kind: 'probe', probe: { file: 'p.safetensors' }, canaries: [] }, /canaries is for SAE packs/],
    [{ kind: 'direction', direction: { file: 'd.safetensors' }, monitor: { fvu_bound: 0.3 } }, /monitor\.fvu_bound needs an SAE reconstruction/],
    [{ kind: 'direction', direction: { file: 'd.safetensors' }, probe: { file: 'p' } }, /probe does not belong in a direction pack/],
    [{ features: [{ id: 1, weight: 1 }], verifier: {} }, /verifier\.probe must name a probe/],
    [{ features: [{ id: 1, weight: 1 }], verifier: { probe: 'v', mode: 'vote' } }, /verifier\.mode must be "token_gate" or "batch_downweight"/],
    [{ features: [{ id: 1, weight: 1 }], verifier: { probe: 'v', threshold: 1.5 } }, /verifier\.threshold must be a disagreement rate in \[0, 1\]/],
    [{ features: [{ id: 1, weight: 1 }], verifier: { probe: 'v', factor: -1 } }, /verifier\.factor must be in \[0, 1\]/],
  ];
  for (const [extra, message] of bad) assert.throws(() => parsePackJson('p.json', { ...own, ...extra }), (err: Error) => message.test(err.message), JSON.stringify(extra));
});
