// Reads an SAE folder (SAELens or sparsify layout) into an SaeSpec: the encode configuration plus where each
// tensor lives in the weights file. No weights are read here; the engine reads them in its workers.
// Every variant is read exactly as the pinned library's encode() computes it (SAELens 6.54.12, sparsify 1.3.3;
// docs/packs.md cites the functions), or refused with the name of the field or tensor: a misread SAE would
// give wrong rewards with no error.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';

import { MechRewardError } from '../errors.js';
import { SAELENS_NO_EFFECT_FIELDS, SAELENS_READ_FIELDS, SPARSIFY_NO_EFFECT_FIELDS, SPARSIFY_READ_FIELDS, firstUnknownField } from './sae-fields.js';
import { readSafetensorsHeader, type SafetensorsHeader, type TensorEntry } from './safetensors.js';

/**
 * topk: the k largest h kept, ReLU'd. abstopk (SAELens): the k largest |h| kept with their sign. groupmax
 * (sparsify): relu(h) split into k contiguous groups, each group's largest kept. relu, jumprelu, gated: per
 * feature.
 */
export type Architecture = 'topk' | 'relu' | 'jumprelu' | 'abstopk' | 'gated' | 'groupmax';

/** Encodes that rank all d_sae pre-activations of a token, so they need the full encoder in one session. */
export function ranksAllFeatures(architecture: Architecture): boolean {
  return architecture === 'topk' || architecture === 'abstopk' || architecture === 'groupmax';
}
/** Run-time input normalisation (SAELens `normalize_activations`). */
export type Normalization = 'none' | 'constant_norm_rescale' | 'layer_norm';

export interface SaeSpec {
  readonly dir: string;
  readonly format: 'saelens' | 'sparsify';
  /** The library's own name for what it saved, e.g. `SAELens jumprelu_skip_transcoder`, `sparsify topk transcode`. */
  readonly variant: string;
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
  /**
   * Why W_dec cannot reconstruct the SAE's input (a transcoder predicts another activation; a skip connection
   * adds W_skip·x), or undefined when it can. The reconstruction-error monitor needs a reconstruction.
   */
  readonly noReconstruction: string | undefined;
  readonly hookName: string | undefined;
  /** Layer parsed from the hook name (`blocks.18.hook_resid_post`, `layers.18`), when there is one. */
  readonly hookLayer: number | undefined;
  /** Every tensor in the weights file: stored dtype (F64 is narrowed to float32 when read) and shape. */
  readonly storedTensors: Readonly<Record<string, { dtype: string; shape: readonly number[] }>>;
  readonly tensors: {
    /** SAELens W_enc [d_model, d_sae]; sparsify encoder.weight [d_sae, d_model] (encoderTransposed). */
    readonly encoder: TensorEntry;
    readonly encoderTransposed: boolean;
    readonly bEnc: TensorEntry;
    /** Undefined for transcoders: the encode never subtracts it (it lives in the output space). */
    readonly bDec: TensorEntry | undefined;
    readonly wDec: TensorEntry | undefined;
    readonly threshold: TensorEntry | undefined;
    /** SAELens checkpoints that store `log_threshold`: the threshold is exp(log_threshold), as SAELens loads it. */
    readonly thresholdIsLog: boolean;
    /** Gated SAEs: the gate's bias and the magnitude path's log-scale (bEnc is then b_mag). */
    readonly gate: { readonly bGate: TensorEntry; readonly rMag: TensorEntry } | undefined;
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

/** Refuses a tensor the encode and decode do not name: the library's strict load would refuse it too. */
function checkNoOtherTensors(file: string, header: SafetensorsHeader, known: readonly string[], variant: string): void {
  const other = [...header.tensors.keys()].find((n) => !known.includes(n));
  if (other !== undefined) throw invalid(file, `tensor ${other} is not part of a ${variant} (expected ${known.join(', ')})`);
}

function storedTensors(header: SafetensorsHeader): SaeSpec['storedTensors'] {
  return Object.fromEntries([...header.tensors].map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape }]));
}

function refuseUnknownFields(cfgPath: string, cfg: Record<string, unknown>, read: ReadonlySet<string>, noEffect: ReadonlySet<string>): void {
  const unknown = firstUnknownField(cfg, read, noEffect);
  if (unknown !== undefined) {
    throw invalid(cfgPath, `field ${unknown} is not understood by this loader (docs/packs.md lists the fields it reads and those with no effect on the encode)`);
  }
}

function bool(file: string, field: string, v: unknown, fallback: boolean): boolean {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw invalid(file, `${field} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

// SAELens 6.54.12 (sae_lens/__init__.py registers these; sae_lens/saes/*.py hold the encodes).
interface SaeLensArchitecture {
  readonly architecture: Architecture;
  /** Transcoders encode the input without subtracting b_dec (Transcoder.process_sae_in). */
  readonly transcoder: boolean;
  readonly skip: boolean;
}
const SAELENS_ARCHITECTURES: Record<string, SaeLensArchitecture> = {
  standard: { architecture: 'relu', transcoder: false, skip: false },
  topk: { architecture: 'topk', transcoder: false, skip: false },
  jumprelu: { architecture: 'jumprelu', transcoder: false, skip: false },
  transcoder: { architecture: 'relu', transcoder: true, skip: false },
  skip_transcoder: { architecture: 'relu', transcoder: true, skip: true },
  jumprelu_transcoder: { architecture: 'jumprelu', transcoder: true, skip: false },
  jumprelu_skip_transcoder: { architecture: 'jumprelu', transcoder: true, skip: true },
  gated: { architecture: 'gated', transcoder: false, skip: false },
  abstopk: { architecture: 'abstopk', transcoder: false, skip: false },
};
/** SAELens architectures refused, and why (the reason is part of the error). */
const SAELENS_REFUSED: Record<string, string> = {
  batchtopk: 'a BatchTopK training checkpoint selects the top k over the whole batch; save it with save_inference_model (a JumpReLU SAE) and serve that',
  matryoshka_batchtopk: 'a Matryoshka BatchTopK training checkpoint selects the top k over the whole batch; save it with save_inference_model (a JumpReLU SAE) and serve that',
  temporal: 'the temporal SAE encodes each token with attention over the previous tokens of its sequence',
  matching_pursuit: 'the matching-pursuit encode is iterative and not implemented',
};
const SAELENS_NORMALIZATIONS: Record<string, Normalization> = {
  none: 'none',
  // Folded into the weights in final checkpoints: SAELens applies no run-time function for it.
  expected_average_only_in: 'none',
  constant_norm_rescale: 'constant_norm_rescale',
  layer_norm: 'layer_norm',
};

/** SAELens treats a cfg without a version, or one below 6.0.0-rc.0, as the old format (handle_config_defaulting). */
function isPre6(cfg: Record<string, unknown>, metadata: Record<string, unknown>): boolean {
  const version = cfg.sae_lens_version ?? metadata.sae_lens_version;
  if (typeof version !== 'string' || version === '') return true;
  const major = /^v?(\d+)/.exec(version);
  return !major || Number(major[1]) < 6;
}

function refuseArchitecture(cfgPath: string, archName: unknown): void {
  if (typeof archName === 'string' && Object.hasOwn(SAELENS_REFUSED, archName)) throw invalid(cfgPath, `architecture ${JSON.stringify(archName)} is refused: ${SAELENS_REFUSED[archName]}`);
}

function loadSaeLens(dir: string, cfgPath: string, cfg: Record<string, unknown>): SaeSpec {
  // A refused architecture is named before its own fields (which the loader does not know) are.
  refuseArchitecture(cfgPath, cfg.architecture);
  refuseUnknownFields(cfgPath, cfg, SAELENS_READ_FIELDS, SAELENS_NO_EFFECT_FIELDS);
  const dModel = positiveInt(cfgPath, 'd_in', cfg.d_in);
  const dSae = positiveInt(cfgPath, 'd_sae', cfg.d_sae);
  if (cfg.metadata !== undefined && (typeof cfg.metadata !== 'object' || cfg.metadata === null || Array.isArray(cfg.metadata))) throw invalid(cfgPath, 'metadata must be an object');
  const metadata = (cfg.metadata ?? {}) as Record<string, unknown>;
  const pre6 = isPre6(cfg, metadata);
  const rawArch = cfg.architecture ?? 'standard';
  if (typeof rawArch !== 'string') throw invalid(cfgPath, `architecture must be a string, got ${JSON.stringify(rawArch)}`);
  let archName: string = rawArch;
  let k: unknown = cfg.k;
  if (pre6) {
    // handle_pre_6_0_config: activation_fn ("topk" with activation_fn_kwargs.k) makes the SAE a TopK SAE,
    // whatever `architecture` says, and that k wins over a top-level k.
    const activation = cfg.activation_fn ?? cfg.activation_fn_str ?? 'relu';
    const kwargs = cfg.activation_fn_kwargs ?? {};
    if (typeof kwargs !== 'object' || kwargs === null || Array.isArray(kwargs)) throw invalid(cfgPath, 'activation_fn_kwargs must be an object');
    const kwargK = (kwargs as Record<string, unknown>).k;
    if (activation === 'topk' && kwargK !== undefined && kwargK !== null) {
      archName = 'topk';
      k = kwargK;
    } else if (activation === 'topk') {
      throw invalid(cfgPath, 'activation_fn "topk" without activation_fn_kwargs.k: SAELens would encode this SAE as its architecture, not TopK; set architecture and k');
    } else if (activation !== 'relu') {
      throw invalid(cfgPath, `activation_fn ${JSON.stringify(activation)} is not supported (relu, or topk with activation_fn_kwargs.k)`);
    }
  }
  refuseArchitecture(cfgPath, archName);
  const arch = Object.hasOwn(SAELENS_ARCHITECTURES, archName) ? SAELENS_ARCHITECTURES[archName] : undefined;
  if (!arch) throw invalid(cfgPath, `architecture ${JSON.stringify(archName)} is not supported (${Object.keys(SAELENS_ARCHITECTURES).join(', ')})`);
  const architecture = arch.architecture;
  const kValue = architecture === 'topk' || architecture === 'abstopk' ? positiveInt(cfgPath, 'k', k) : 0;
  if (kValue > dSae) throw invalid(cfgPath, `k=${kValue} exceeds d_sae=${dSae}`);
  // Old cfgs stored a bool: true meant expected_average_only_in (folded), false none.
  const rawNorm = cfg.normalize_activations;
  const normName = rawNorm === undefined || rawNorm === null || rawNorm === false ? 'none' : rawNorm === true ? 'expected_average_only_in' : rawNorm;
  const normalization = typeof normName === 'string' && Object.hasOwn(SAELENS_NORMALIZATIONS, normName) ? SAELENS_NORMALIZATIONS[normName] : undefined;
  if (!normalization) {
    const why = normName === 'covariance_whitening' ? ': SAELens applies no run-time whitening at inference; fold it into the weights (fold_activation_whitening) and save again' : ` (${Object.keys(SAELENS_NORMALIZATIONS).join(', ')})`;
    throw invalid(cfgPath, `normalize_activations ${JSON.stringify(normName)} is not supported${why}`);
  }
  const reshape = cfg.reshape_activations ?? 'none';
  if (reshape !== 'none' && reshape !== 'hook_z') throw invalid(cfgPath, `reshape_activations ${JSON.stringify(reshape)} is not supported (none, hook_z)`);
  if (cfg.dtype !== undefined && typeof cfg.dtype !== 'string') throw invalid(cfgPath, `dtype must be a string, got ${JSON.stringify(cfg.dtype)}`);
  const hookRaw = metadata.hook_name ?? cfg.hook_name ?? cfg.hook_point;
  const hookName = typeof hookRaw === 'string' ? hookRaw : undefined;
  // TopKSAEConfig (and AbsTopKSAEConfig, its subclass) is the only config class with
  // rescale_acts_by_decoder_norm: SAELens drops the field from every other architecture's cfg.
  const rescaleByDecoderNorm = (architecture === 'topk' || architecture === 'abstopk') && bool(cfgPath, 'rescale_acts_by_decoder_norm', cfg.rescale_acts_by_decoder_norm, false);
  const applyBDecToInput = bool(cfgPath, 'apply_b_dec_to_input', cfg.apply_b_dec_to_input, true);
  // TranscoderConfig.__post_init__ refuses apply_b_dec_to_input: b_dec has d_out entries.
  if (arch.transcoder && applyBDecToInput) throw invalid(cfgPath, `apply_b_dec_to_input must be false for a ${archName} (SAELens refuses it too)`);
  const dOut = arch.transcoder ? positiveInt(cfgPath, 'd_out', cfg.d_out) : dModel;
  const weightsPath = path.join(dir, 'sae_weights.safetensors');
  const header = readSafetensorsHeader(weightsPath, { allowF64: true });
  const t = header.tensors;
  const variant = `SAELens ${archName}`;
  const thresholdName = architecture === 'jumprelu' && !t.has('threshold') && t.has('log_threshold') ? 'log_threshold' : 'threshold';
  const gated = architecture === 'gated';
  checkNoOtherTensors(weightsPath, header, ['W_enc', ...(gated ? ['b_gate', 'b_mag', 'r_mag'] : ['b_enc']), 'W_dec', 'b_dec', ...(architecture === 'jumprelu' ? [thresholdName] : []), ...(arch.skip ? ['W_skip'] : [])], variant);
  const wDec = rescaleByDecoderNorm ? requireTensor(weightsPath, t, 'W_dec', [dSae, dOut]) : optionalTensor(weightsPath, t, 'W_dec', [dSae, dOut]);
  const bDec = arch.transcoder ? optionalTensor(weightsPath, t, 'b_dec', [dOut]) : requireTensor(weightsPath, t, 'b_dec', [dModel]);
  if (arch.skip) optionalTensor(weightsPath, t, 'W_skip', [dOut, dModel]);
  return {
    dir,
    format: 'saelens',
    variant,
    weightsPath,
    key: realpathSync(weightsPath),
    dModel,
    dSae,
    k: kValue,
    architecture,
    applyBDecToInput,
    normalization,
    rescaleByDecoderNorm,
    noReconstruction: arch.transcoder ? `${archName} predicts another activation (d_out ${dOut})` : undefined,
    hookName,
    hookLayer: layerFromHook(hookName),
    storedTensors: storedTensors(header),
    tensors: {
      encoder: requireTensor(weightsPath, t, 'W_enc', [dModel, dSae]),
      encoderTransposed: false,
      // GatedSAE.encode: [x W_enc + b_gate > 0] * relu(x (W_enc * exp(r_mag)) + b_mag).
      bEnc: requireTensor(weightsPath, t, gated ? 'b_mag' : 'b_enc', [dSae]),
      bDec: arch.transcoder ? undefined : bDec,
      wDec: arch.transcoder ? undefined : wDec,
      threshold: architecture === 'jumprelu' ? requireTensor(weightsPath, t, thresholdName, [dSae]) : undefined,
      thresholdIsLog: thresholdName === 'log_threshold',
      gate: gated ? { bGate: requireTensor(weightsPath, t, 'b_gate', [dSae]), rMag: requireTensor(weightsPath, t, 'r_mag', [dSae]) } : undefined,
    },
  };
}

// sparsify 1.3.3: SparseCoderConfig (sparsify/config.py), SparseCoder.encode (sparsify/sparse_coder.py),
// fused_encoder (sparsify/fused_encoder.py).
function loadSparsify(dir: string, cfgPath: string, cfg: Record<string, unknown>): SaeSpec {
  refuseUnknownFields(cfgPath, cfg, SPARSIFY_READ_FIELDS, SPARSIFY_NO_EFFECT_FIELDS);
  const dModel = positiveInt(cfgPath, 'd_in', cfg.d_in);
  const activation = cfg.activation ?? 'topk';
  if (activation !== 'topk' && activation !== 'groupmax') throw invalid(cfgPath, `activation ${JSON.stringify(activation)} is not supported (topk, groupmax)`);
  const numLatents = cfg.num_latents ?? 0;
  const dSae = numLatents === 0 ? dModel * positiveInt(cfgPath, 'expansion_factor', cfg.expansion_factor ?? 32) : positiveInt(cfgPath, 'num_latents', numLatents);
  const k = positiveInt(cfgPath, 'k', cfg.k ?? 32);
  if (k > dSae) throw invalid(cfgPath, `k=${k} exceeds d_sae=${dSae}`);
  // fused_encoder's groupmax: preacts.unflatten(-1, (k, -1)) needs k groups of equal size.
  if (activation === 'groupmax' && dSae % k !== 0) throw invalid(cfgPath, `activation "groupmax" needs num_latents (${dSae}) divisible by k (${k})`);
  // encode(): `if not self.cfg.transcode: x = x - self.b_dec`.
  const transcode = bool(cfgPath, 'transcode', cfg.transcode, false);
  const skip = bool(cfgPath, 'skip_connection', cfg.skip_connection, false);
  const weightsPath = path.join(dir, 'sae.safetensors');
  const header = readSafetensorsHeader(weightsPath, { allowF64: true });
  const t = header.tensors;
  const variant = `sparsify ${activation}${transcode ? ' transcode' : ''}${skip ? ' skip_connection' : ''}`;
  checkNoOtherTensors(weightsPath, header, ['encoder.weight', 'encoder.bias', 'W_dec', 'b_dec', ...(skip ? ['W_skip'] : [])], variant);
  const bDec = requireTensor(weightsPath, t, 'b_dec', [dModel]);
  if (skip) optionalTensor(weightsPath, t, 'W_skip', [dModel, dModel]);
  // sparsify names its folders after the hookpoint (layers.18).
  const hookName = path.basename(path.resolve(dir));
  return {
    dir,
    format: 'sparsify',
    variant,
    weightsPath,
    key: realpathSync(weightsPath),
    dModel,
    dSae,
    k,
    architecture: activation === 'groupmax' ? 'groupmax' : 'topk',
    applyBDecToInput: !transcode,
    normalization: 'none',
    rescaleByDecoderNorm: false,
    noReconstruction: transcode ? 'a sparsify transcoder predicts another activation' : skip ? 'the skip connection adds W_skip·x to the decoder output' : undefined,
    hookName,
    hookLayer: layerFromHook(hookName),
    storedTensors: storedTensors(header),
    tensors: {
      encoder: requireTensor(weightsPath, t, 'encoder.weight', [dSae, dModel]),
      encoderTransposed: true,
      bEnc: requireTensor(weightsPath, t, 'encoder.bias', [dSae]),
      bDec: transcode ? undefined : bDec,
      wDec: transcode || skip ? undefined : optionalTensor(weightsPath, t, 'W_dec', [dSae, dModel]),
      threshold: undefined,
      thresholdIsLog: false,
      gate: undefined,
    },
  };
}
