// Reads an SAE's encoder tensors from its safetensors file into float32 (inside an engine worker) and
// derives what the graphs need: decoder row norms, and the pack's columns for selected graphs.
import { MechRewardError } from '../errors.js';
import { firstNonFinite } from '../numerics/widen.js';
import type { LinearReadout } from '../packs/linear.js';
import type { SaeSpec } from '../packs/sae.js';
import { readTensorAsFloat32, type TensorEntry } from '../packs/safetensors.js';
import type { FullEncoderWeights } from './graph.js';

export interface LoadedSae extends FullEncoderWeights {
  readonly threshold: Float32Array | undefined;
  /** Gated SAEs: b_gate, and exp(r_mag) kept in float64 so W_enc * exp(r_mag) is rounded once. */
  readonly gate: { readonly bias: Float32Array; readonly magnitudeScale: Float64Array } | undefined;
  /** W_dec [d_sae, d_model], read only when a session decodes. */
  readonly decoder: Float32Array | undefined;
}

/** A tensor of `file` widened exactly to float32; a NaN or infinity is refused, naming the file and tensor. */
function readChecked(file: string, name: string, entry: TensorEntry): Float32Array {
  const values = readTensorAsFloat32(file, entry);
  const bad = firstNonFinite(values);
  if (bad >= 0) throw new MechRewardError('MR_ERR_PACK_INVALID', `${file}: tensor ${name} holds a non-finite value at element ${bad}`);
  return values;
}

/** JumpReLU thresholds; a `log_threshold` tensor is exponentiated (in float64, then rounded) as SAELens loads it. */
function readThreshold(sae: SaeSpec): Float32Array {
  const t = sae.tensors;
  const values = readChecked(sae.weightsPath, t.thresholdIsLog ? 'log_threshold' : 'threshold', t.threshold!);
  if (t.thresholdIsLog) for (let i = 0; i < values.length; i++) values[i] = Math.exp(values[i]!);
  return values;
}

export function loadSaeWeights(sae: SaeSpec, withDecoder = false): LoadedSae {
  const t = sae.tensors;
  let decoderNorm: Float32Array | undefined;
  const decoder = withDecoder || sae.rescaleByDecoderNorm ? readChecked(sae.weightsPath, 'W_dec', t.wDec!) : undefined;
  if (sae.rescaleByDecoderNorm) {
    const wDec = decoder!;
    decoderNorm = new Float32Array(sae.dSae);
    for (let i = 0; i < sae.dSae; i++) {
      let s = 0; // accumulate in float64
      for (let d = 0; d < sae.dModel; d++) s += wDec[i * sae.dModel + d]! ** 2;
      decoderNorm[i] = Math.sqrt(s);
    }
  }
  return {
    encoder: readChecked(sae.weightsPath, 'encoder', t.encoder),
    encoderTransposed: t.encoderTransposed,
    bEnc: readChecked(sae.weightsPath, 'b_enc', t.bEnc),
    // A transcoder's encode never reads b_dec; zeros keep the graphs' inputs uniform (preprocess skips it).
    bDec: t.bDec ? readChecked(sae.weightsPath, 'b_dec', t.bDec) : new Float32Array(sae.dModel),
    decoderNorm,
    threshold: t.threshold ? readThreshold(sae) : undefined,
    gate: t.gate ? { bias: readChecked(sae.weightsPath, 'b_gate', t.gate.bGate), magnitudeScale: Float64Array.from(readChecked(sae.weightsPath, 'r_mag', t.gate.rMag), Math.exp) } : undefined,
    decoder: withDecoder ? decoder : undefined,
  };
}

/** W_enc[:, ids] as a row-major [d_model, ids.length] matrix, from either encoder layout. */
export function gatherEncoderColumns(sae: SaeSpec, w: LoadedSae, ids: readonly number[]): Float32Array {
  const f = ids.length;
  const out = new Float32Array(sae.dModel * f);
  for (let d = 0; d < sae.dModel; d++) {
    for (let j = 0; j < f; j++) {
      const id = ids[j]!;
      out[d * f + j] = w.encoderTransposed ? w.encoder[id * sae.dModel + d]! : w.encoder[d * sae.dSae + id]!;
    }
  }
  return out;
}

/** A gated SAE's magnitude-path columns W_enc[:, ids] * exp(r_mag[ids]), rounded once to float32. */
export function gatherMagnitudeColumns(columns: Float32Array, scale: Float64Array, ids: readonly number[]): Float32Array {
  const f = ids.length;
  return columns.map((v, i) => v * scale[ids[i % f]!]!);
}

export function gather(values: Float32Array, ids: readonly number[]): Float32Array {
  return Float32Array.from(ids, (id) => values[id]!);
}

/** A linear read-out's weight [d_model] and bias, widened exactly to float32 and checked finite. */
export function loadLinearWeights(readout: LinearReadout): { weight: Float32Array; bias: number } {
  return { weight: readChecked(readout.weightsPath, 'weight', readout.weight), bias: readChecked(readout.weightsPath, 'bias', readout.bias)[0]! };
}
