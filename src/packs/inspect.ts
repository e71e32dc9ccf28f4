// `mechreward sae inspect DIR`: what the SAE loader understood from a folder, so a user sees the encode the
// server will compute before serving it.
import { loadSae, LAYER_NORM_EPS, type SaeSpec } from './sae.js';
import { readTensorAsFloat32 } from './safetensors.js';

export interface SaeInspection {
  dir: string;
  format: SaeSpec['format'];
  variant: string;
  architecture: SaeSpec['architecture'];
  d_in: number;
  d_sae: number;
  k: number;
  normalization: SaeSpec['normalization'];
  subtracts_b_dec: boolean;
  rescale_by_decoder_norm: boolean;
  encode: string;
  thresholds: { min: number; max: number; mean: number; from: string } | null;
  tensors: Record<string, { dtype: string; shape: readonly number[]; read_as: string }>;
  hook_name: string | null;
  layer: number | null;
  reconstruction: string;
}

function encodeFormula(sae: SaeSpec): string {
  const steps: string[] = [];
  if (sae.normalization === 'constant_norm_rescale') steps.push('x = x * sqrt(d_in) / ||x||');
  if (sae.normalization === 'layer_norm') steps.push(`x = (x - mean(x)) / (std(x, unbiased) + ${LAYER_NORM_EPS})`);
  if (sae.applyBDecToInput) steps.push('x = x - b_dec');
  const enc = sae.tensors.encoderTransposed ? 'x @ encoder.weight^T + encoder.bias' : 'x @ W_enc + b_enc';
  if (sae.architecture === 'gated') {
    steps.push('f = [x @ W_enc + b_gate > 0] * max(x @ (W_enc * exp(r_mag)) + b_mag, 0)');
    return steps.join('; ');
  }
  steps.push(sae.rescaleByDecoderNorm ? `h = (${enc}) * ||W_dec[i]||` : `h = ${enc}`);
  if (sae.architecture === 'abstopk') steps.push(`f_i = h_i for the ${sae.k} largest |h_i| (ties: lower index, sign kept), else 0`);
  if (sae.architecture === 'groupmax') steps.push(`relu(h) in ${sae.k} contiguous groups of ${sae.dSae / sae.k}; f_i = relu(h_i) if i is its group's maximum (ties: lower index), else 0`);
  if (sae.architecture === 'topk') steps.push(`f_i = max(h_i, 0) for the ${sae.k} largest h_i (ties: lower index), else 0`);
  if (sae.architecture === 'relu') steps.push('f = max(h, 0)');
  if (sae.architecture === 'jumprelu') steps.push(`f = max(h, 0) * [h > ${sae.tensors.thresholdIsLog ? 'exp(log_threshold)' : 'threshold'}]`);
  return steps.join('; ');
}

export function inspectSae(dir: string): SaeInspection {
  const sae = loadSae(dir);
  let thresholds: SaeInspection['thresholds'] = null;
  if (sae.tensors.threshold) {
    const raw = readTensorAsFloat32(sae.weightsPath, sae.tensors.threshold);
    const values = sae.tensors.thresholdIsLog ? raw.map(Math.exp) : raw;
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (const v of values) {
      min = Math.min(min, v);
      max = Math.max(max, v);
      sum += v;
    }
    thresholds = { min, max, mean: sum / values.length, from: sae.tensors.thresholdIsLog ? 'log_threshold' : 'threshold' };
  }
  const tensors = Object.fromEntries(
    Object.entries(sae.storedTensors).map(([name, { dtype, shape }]) => [name, { dtype, shape, read_as: dtype === 'F64' ? 'float32, narrowed (round to nearest even)' : 'float32, exact' }]),
  );
  return {
    dir,
    format: sae.format,
    variant: sae.variant,
    architecture: sae.architecture,
    d_in: sae.dModel,
    d_sae: sae.dSae,
    k: sae.k,
    normalization: sae.normalization,
    subtracts_b_dec: sae.applyBDecToInput,
    rescale_by_decoder_norm: sae.rescaleByDecoderNorm,
    encode: encodeFormula(sae),
    thresholds,
    tensors,
    hook_name: sae.hookName ?? null,
    layer: sae.hookLayer ?? null,
    reconstruction: sae.noReconstruction ?? (sae.tensors.wDec ? 'W_dec code + b_dec (the monitor can use it)' : 'none (no W_dec)'),
  };
}

export function formatInspection(i: SaeInspection): string[] {
  const lines = [
    `${i.dir}: ${i.variant} (${i.format} layout)`,
    `  architecture:    ${i.architecture}${i.k ? `, k = ${i.k}` : ''}`,
    `  shape:           d_in ${i.d_in}, d_sae ${i.d_sae}`,
    `  normalisation:   ${i.normalization}`,
    `  b_dec:           ${i.subtracts_b_dec ? 'subtracted from the input' : 'not subtracted'}`,
    `  decoder norm:    ${i.rescale_by_decoder_norm ? 'pre-activations times ||W_dec[i]||' : 'not applied'}`,
    `  encode:          ${i.encode}`,
  ];
  if (i.thresholds) lines.push(`  thresholds:      ${i.thresholds.from}: min ${i.thresholds.min.toPrecision(4)}, mean ${i.thresholds.mean.toPrecision(4)}, max ${i.thresholds.max.toPrecision(4)}`);
  lines.push(`  hook:            ${i.hook_name ?? '(none)'}${i.layer !== null ? ` (layer ${i.layer})` : ''}`);
  lines.push(`  reconstruction:  ${i.reconstruction}`);
  lines.push('  tensors:');
  for (const [name, t] of Object.entries(i.tensors)) lines.push(`    ${name.padEnd(16)} ${t.dtype.padEnd(5)} [${t.shape.join(', ')}]  read as ${t.read_as}`);
  return lines;
}
