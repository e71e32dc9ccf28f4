// Reads an SAE folder (SAELens or sparsify layout) into an SaeSpec: the encode configuration plus where each
// tensor lives in the weights file. No weights are read here; the engine reads them in its workers.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';

import { MechRewardError } from '../errors.js';
import { readSafetensorsHeader, type TensorEntry } from './safetensors.js';

export type Architecture = 'topk' | 'relu' | 'jumprelu';
/** Run-time input normalisation (SAELens `normalize_activations`). */
export type Normalization = 'none' | 'constant_norm_rescale' | 'layer_norm';

export interface SaeSpec {
  readonly dir: string;
  readonly format: 'saelens' | 'sparsify';
  readonly weightsPath: string;
  /** Real path of the weights file: packs whose SAE resolves to the same key share one copy of the weights. */
  readonly key: string;
  readonly dModel: number;
  readonly dSae: number;
  /** 0 for architectures without TopK. */
  readonly k: number;
  readonly architecture: Architecture;
  readonly applyBDecToInput: boolean;
  readonly normalization: Normalization;
  readonly rescaleByDecoderNorm: boolean;
  readonly hookName: string | undefined;
  /** Layer parsed from the hook name (`blocks.18.hook_resid_post`, `layers.18`), when there is one. */
  readonly hookLayer: number | undefined;
  readonly tensors: {
    /** SAELens W_enc [d_model, d_sae]; sparsify encoder.weight [d_sae, d_model] (encoderTransposed). */
    readonly encoder: TensorEntry;
    readonly encoderTransposed: boolean;
    readonly bEnc: TensorEntry;
    readonly bDec: TensorEntry;
    readonly wDec: TensorEntry | undefined;
    readonly threshold: TensorEntry | undefined;
  };
}

/** SAELens layer_norm adds this to the (unbiased) standard deviation. */
export const LAYER_NORM_EPS = 1e-5;

function invalid(where: string, what: string): MechRewardError {
  return new MechRewardError('MR_ERR_PACK_INVALID', `${where}: ${what}`);
}

function readJson(file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw invalid(file, `cannot read JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid(file, 'not a JSON object');
  return parsed as Record<string, unknown>;
}

function positiveInt(file: string, field: string, v: unknown): number {
  if (!Number.isSafeInteger(v) || (v as number) <= 0) throw invalid(file, `${field} must be a positive integer, got ${JSON.stringify(v)}`);
  return v as number;
}

function layerFromHook(hook: string | undefined): number | undefined {
  const m = hook?.match(/(?:^|\.)(?:blocks|layers)\.(\d+)(?:\.|$)/);
  return m ? Number(m[1]) : undefined;
}

export function loadSae(dir: string): SaeSpec {
  const cfgPath = path.join(dir, 'cfg.json');
  if (!existsSync(cfgPath)) throw invalid(dir, 'no cfg.json (expected SAELens cfg.json + sae_weights.safetensors or sparsify cfg.json + sae.safetensors)');
  const cfg = readJson(cfgPath);
  if (existsSync(path.join(dir, 'sae_weights.safetensors'))) return loadSaeLens(dir, cfgPath, cfg);
  if (existsSync(path.join(dir, 'sae.safetensors'))) return loadSparsify(dir, cfgPath, cfg);
  throw invalid(dir, 'no sae_weights.safetensors (SAELens) or sae.safetensors (sparsify)');
}

function requireTensor(file: string, tensors: ReadonlyMap<string, TensorEntry>, name: string, shape: number[]): TensorEntry {
  const t = tensors.get(name);
  if (!t) throw invalid(file, `missing tensor ${name}`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw invalid(file, `tensor ${name} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return t;
}

function optionalTensor(file: string, tensors: ReadonlyMap<string, TensorEntry>, name: string, shape: number[]): TensorEntry | undefined {
  return tensors.has(name) ? requireTensor(file, tensors, name, shape) : undefined;
}

const SAELENS_ARCHITECTURES: Record<string, Architecture> = { topk: 'topk', standard: 'relu', relu: 'relu', jumprelu: 'jumprelu' };
const SAELENS_NORMALIZATIONS: Record<string, Normalization> = {
  none: 'none',
  // Folded into the weights in final checkpoints: identity at run time.
  expected_average_only_in: 'none',
  constant_norm_rescale: 'constant_norm_rescale',
  layer_norm: 'layer_norm',
};

function loadSaeLens(dir: string, cfgPath: string, cfg: Record<string, unknown>): SaeSpec {
  const dModel = positiveInt(cfgPath, 'd_in', cfg.d_in);
  const dSae = positiveInt(cfgPath, 'd_sae', cfg.d_sae);
  const archName = String(cfg.architecture ?? 'standard');
  const architecture = SAELENS_ARCHITECTURES[archName];
  if (!architecture) throw invalid(cfgPath, `architecture ${JSON.stringify(archName)} is not supported (topk, standard, jumprelu)`);
  const k = architecture === 'topk' ? positiveInt(cfgPath, 'k', cfg.k) : 0;
  if (k > dSae) throw invalid(cfgPath, `k=${k} exceeds d_sae=${dSae}`);
  const normName = String(cfg.normalize_activations ?? 'none');
  const normalization = SAELENS_NORMALIZATIONS[normName];
  if (!normalization) throw invalid(cfgPath, `normalize_activations ${JSON.stringify(normName)} is not supported (${Object.keys(SAELENS_NORMALIZATIONS).join(', ')})`);
  const metadata = (typeof cfg.metadata === 'object' && cfg.metadata !== null ? cfg.metadata : {}) as Record<string, unknown>;
  const hookName = typeof metadata.hook_name === 'string' ? metadata.hook_name : typeof cfg.hook_name === 'string' ? cfg.hook_name : undefined;
  const weightsPath = path.join(dir, 'sae_weights.safetensors');
  const header = readSafetensorsHeader(weightsPath);
  const t = header.tensors;
  const rescaleByDecoderNorm = cfg.rescale_acts_by_decoder_norm === true;
  const wDec = rescaleByDecoderNorm ? requireTensor(weightsPath, t, 'W_dec', [dSae, dModel]) : optionalTensor(weightsPath, t, 'W_dec', [dSae, dModel]);
  return {
    dir,
    format: 'saelens',
    weightsPath,
    key: realpathSync(weightsPath),
    dModel,
    dSae,
    k,
    architecture,
    applyBDecToInput: cfg.apply_b_dec_to_input !== false,
    normalization,
    rescaleByDecoderNorm,
    hookName,
    hookLayer: layerFromHook(hookName),
    tensors: {
      encoder: requireTensor(weightsPath, t, 'W_enc', [dModel, dSae]),
      encoderTransposed: false,
      bEnc: requireTensor(weightsPath, t, 'b_enc', [dSae]),
      bDec: requireTensor(weightsPath, t, 'b_dec', [dModel]),
      wDec,
      threshold: architecture === 'jumprelu' ? requireTensor(weightsPath, t, 'threshold', [dSae]) : undefined,
    },
  };
}

function loadSparsify(dir: string, cfgPath: string, cfg: Record<string, unknown>): SaeSpec {
  const dModel = positiveInt(cfgPath, 'd_in', cfg.d_in);
  const activation = String(cfg.activation ?? 'topk');
  if (activation !== 'topk') throw invalid(cfgPath, `activation ${JSON.stringify(activation)} is not supported (topk)`);
  const numLatents = cfg.num_latents ?? 0;
  const dSae = numLatents === 0 ? dModel * positiveInt(cfgPath, 'expansion_factor', cfg.expansion_factor) : positiveInt(cfgPath, 'num_latents', numLatents);
  const k = positiveInt(cfgPath, 'k', cfg.k);
  if (k > dSae) throw invalid(cfgPath, `k=${k} exceeds d_sae=${dSae}`);
  const weightsPath = path.join(dir, 'sae.safetensors');
  const header = readSafetensorsHeader(weightsPath);
  const t = header.tensors;
  // sparsify names its folders after the hookpoint (layers.18).
  const hookName = path.basename(path.resolve(dir));
  return {
    dir,
    format: 'sparsify',
    weightsPath,
    key: realpathSync(weightsPath),
    dModel,
    dSae,
    k,
    architecture: 'topk',
    applyBDecToInput: true, // sparsify always encodes x - b_dec
    normalization: 'none',
    rescaleByDecoderNorm: false,
    hookName,
    hookLayer: layerFromHook(hookName),
    tensors: {
      encoder: requireTensor(weightsPath, t, 'encoder.weight', [dSae, dModel]),
      encoderTransposed: true,
      bEnc: requireTensor(weightsPath, t, 'encoder.bias', [dSae]),
      bDec: requireTensor(weightsPath, t, 'b_dec', [dModel]),
      wDec: optionalTensor(weightsPath, t, 'W_dec', [dSae, dModel]),
      threshold: undefined,
    },
  };
}
