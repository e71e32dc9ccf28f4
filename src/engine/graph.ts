// Builds the ONNX graphs that compute pack rewards, in-process, from SAE weights already in memory.
// Two shapes of graph:
//   - "full": the whole encoder with an exact TopK. Pack features arrive as run-time inputs (feature_ids,
//     feature_weights, feature_thresholds), so every pack on one SAE shares one session and one copy of W_enc.
//   - "selected": only the pack's columns of W_enc are baked in. Exact for relu, jumprelu and gated SAEs
//     (their activations are per-feature) and the definition of the `selected_relu` encode mode.
// Both take x [N, d_model] float32 and return reward [N] and acts [N, F] (per-feature activations after the
// feature thresholds). Large initializers travel as ONNX external data so the model protobuf stays small.
import onnxProto from 'onnx-proto';

import { LAYER_NORM_EPS, type Architecture, type Normalization } from '../packs/sae.js';
import { INT8_ACCURACY_LEVEL, type Int8Encoder } from './quantize.js';

const { onnx } = onnxProto;
type INodeProto = onnxProto.onnx.INodeProto;
type ITensorProto = onnxProto.onnx.ITensorProto;

const OPSET = 17;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const UINT8 = onnx.TensorProto.DataType.UINT8;
/** onnxruntime's contrib-op domain (MatMulNBits). */
const MS_DOMAIN = 'com.microsoft';
/** Initializers above this size go to external data instead of the protobuf. */
const EXTERNAL_BYTES = 1 << 20;

export interface EncoderConfig {
  readonly dModel: number;
  readonly architecture: Architecture;
  readonly k: number;
  readonly applyBDecToInput: boolean;
  readonly normalization: Normalization;
}

export interface BuiltModel {
  readonly model: Uint8Array;
  readonly externalData: { path: string; data: Uint8Array }[];
}

class GraphBuilder {
  readonly nodes: INodeProto[] = [];
  readonly initializers: ITensorProto[] = [];
  readonly externalData: { path: string; data: Uint8Array }[] = [];
  /** Operator domains beyond the default one that the graph uses. */
  readonly domains = new Set<string>();
  private counter = 0;

  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  op(opType: string, inputs: string[], attrs: Record<string, number | number[]> = {}, outputs = 1, domain = ''): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()));
    const attribute = Object.entries(attrs).map(([name, v]) =>
      Array.isArray(v)
        ? { name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }
        : Number.isInteger(v)
          ? { name, type: onnx.AttributeProto.AttributeType.INT, i: v }
          : { name, type: onnx.AttributeProto.AttributeType.FLOAT, f: v },
    );
    this.nodes.push({ opType, domain, input: inputs, output: outs, attribute, name: this.fresh(`n_${opType}`) });
    if (domain) this.domains.add(domain);
    return outs;
  }

  one(opType: string, inputs: string[], attrs: Record<string, number | number[]> = {}): string {
    return this.op(opType, inputs, attrs, 1)[0]!;
  }

  floats(name: string, values: Float32Array, dims: number[]): string {
    return this.tensor(name, new Uint8Array(values.buffer, values.byteOffset, values.byteLength), dims, FLOAT);
  }

  uint8s(name: string, values: Uint8Array, dims: number[]): string {
    return this.tensor(name, values, dims, UINT8);
  }

  private tensor(name: string, bytes: Uint8Array, dims: number[], dataType: number): string {
    if (bytes.byteLength > EXTERNAL_BYTES) {
      const location = `${name}.bin`;
      this.externalData.push({ path: location, data: bytes });
      this.initializers.push({
        name,
        dims,
        dataType,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: '0' },
          { key: 'length', value: String(bytes.byteLength) },
        ],
      });
    } else {
      this.initializers.push({ name, dims, dataType, rawData: bytes });
    }
    return name;
  }

  scalar(name: string, value: number): string {
    return this.floats(name, new Float32Array([value]), []);
  }

  int64s(name: string, values: number[]): string {
    this.initializers.push({ name, dims: [values.length], dataType: INT64, int64Data: values });
    return name;
  }
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]) {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/**
 * Normalisation and b_dec subtraction, in SAELens order: normalise first, then subtract b_dec. Returns the
 * encoder input; `normalisedOut` receives the normalised x (the space the SAE reconstructs).
 */
function preprocess(g: GraphBuilder, cfg: EncoderConfig, bDec: Float32Array, normalisedOut?: { name: string }): string {
  let x = 'x';
  if (cfg.normalization === 'constant_norm_rescale') {
    const sumSq = g.one('ReduceSumSquare', [x], { axes: [-1], keepdims: 1 });
    const norm = g.one('Sqrt', [sumSq]);
    x = g.one('Mul', [x, g.one('Div', [g.scalar('sqrt_d_model', Math.sqrt(cfg.dModel)), norm])]);
  } else if (cfg.normalization === 'layer_norm') {
    const mean = g.one('ReduceMean', [x], { axes: [-1], keepdims: 1 });
    const centred = g.one('Sub', [x, mean]);
    const sumSq = g.one('ReduceSumSquare', [centred], { axes: [-1], keepdims: 1 });
    // Unbiased standard deviation (torch.std's default), then eps added to the std, as SAELens does.
    const std = g.one('Sqrt', [g.one('Div', [sumSq, g.scalar('d_model_minus_1', cfg.dModel - 1)])]);
    x = g.one('Div', [centred, g.one('Add', [std, g.scalar('ln_eps', LAYER_NORM_EPS)])]);
  }
  if (normalisedOut) normalisedOut.name = x;
  if (cfg.applyBDecToInput) x = g.one('Sub', [x, g.floats('b_dec', bDec, [cfg.dModel])]);
  return x;
}

/** acts = acts * (acts > thresholds); then reward = acts @ weights. */
function finish(g: GraphBuilder, acts: string, weights: string, thresholds: string): void {
  const keep = g.one('Cast', [g.one('Greater', [acts, thresholds])], { to: FLOAT });
  g.nodes.push({ opType: 'Mul', input: [acts, keep], output: ['acts'], name: 'n_acts' });
  g.nodes.push({ opType: 'MatMul', input: ['acts', weights], output: ['reward'], name: 'n_reward' });
}

function serialise(g: GraphBuilder, inputs: ReturnType<typeof valueInfo>[], numFeatures: number | string, extraOutputs: string[] = []): BuiltModel {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'mechreward',
    opsetImport: [{ domain: '', version: OPSET }, ...[...g.domains].map((domain) => ({ domain, version: 1 }))],
    graph: {
      name: 'mechreward_reward',
      node: g.nodes,
      initializer: g.initializers,
      input: inputs,
      output: [valueInfo('reward', FLOAT, ['N']), valueInfo('acts', FLOAT, ['N', numFeatures]), ...extraOutputs.map((o) => valueInfo(o, FLOAT, ['N']))],
    },
  });
  return { model: onnx.ModelProto.encode(model).finish(), externalData: g.externalData };
}

export interface FullEncoderWeights {
  /** [d_model, d_sae], or [d_sae, d_model] when `encoderTransposed` (sparsify's encoder.weight). */
  readonly encoder: Float32Array;
  readonly encoderTransposed: boolean;
  readonly bEnc: Float32Array;
  readonly bDec: Float32Array;
  /** ||W_dec[i]|| per feature when the SAE rescales by decoder norm. */
  readonly decoderNorm: Float32Array | undefined;
}

/**
 * The exact TopK encode over all d_sae features; pack features are run-time inputs. With `decoder` (W_dec
 * [d_sae, d_model]) it also decodes the TopK code and outputs, per token, recon_err = ||x' - x_hat||^2 and
 * centered_energy = ||x' - mean(x')||^2 (x' = the normalised input), from which the scorer forms a
 * response's fraction of variance unexplained. With `int8` (the `topk_int8` encode mode) the encoder product
 * is onnxruntime's int8 MatMulNBits instead of the float32 Gemm; everything after it is unchanged.
 */
export function buildFullTopKModel(cfg: EncoderConfig & { dSae: number }, w: FullEncoderWeights, decoder?: Float32Array, int8?: Int8Encoder): BuiltModel {
  const g = new GraphBuilder();
  const normalised = { name: 'x' };
  const x = preprocess(g, cfg, w.bDec, normalised);
  let h = int8 ? int8Encode(g, cfg, x, int8, w.bEnc) : g.one('Gemm', [x, g.floats('W_enc', w.encoder, w.encoderTransposed ? [cfg.dSae, cfg.dModel] : [cfg.dModel, cfg.dSae]), g.floats('b_enc', w.bEnc, [cfg.dSae])], {
    transB: w.encoderTransposed ? 1 : 0,
  });
  if (w.decoderNorm) h = g.one('Mul', [h, g.floats('decoder_norm', w.decoderNorm, [cfg.dSae])]);
  const { kept, indices } = selectLatents(g, cfg, h);
  // acts[n, f] = sum_j relu(values[n, j]) * (indices[n, j] == feature_ids[f]): N*k*F work, no [N, d_sae] scatter.
  const match = g.one('Cast', [g.one('Equal', [g.one('Unsqueeze', [indices, g.int64s('axis2', [2])]), 'feature_ids'])], { to: FLOAT });
  const weighted = g.one('Mul', [match, g.one('Unsqueeze', [kept, g.int64s('axis2b', [2])])]);
  const acts = g.one('ReduceSum', [weighted, g.int64s('axis1', [1])], { keepdims: 0 });
  finish(g, acts, 'feature_weights', 'feature_thresholds');
  if (decoder) {
    // Dense code: zeros with the TopK values scattered in, then SAELens' decode (undo the decoder-norm
    // rescale first when the SAE applies one).
    const zeros = g.one('Mul', [h, g.scalar('zero', 0)]);
    let code = g.one('ScatterElements', [zeros, indices, kept], { axis: 1 });
    if (w.decoderNorm) code = g.one('Div', [code, 'decoder_norm']);
    const xHat = g.one('Gemm', [code, g.floats('W_dec', decoder, [cfg.dSae, cfg.dModel]), g.floats('b_dec_decode', w.bDec, [cfg.dModel])]);
    g.nodes.push({ opType: 'ReduceSumSquare', input: [g.one('Sub', [normalised.name, xHat])], output: ['recon_err'], attribute: [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [-1] }, { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }], name: 'n_recon_err' });
    const mean = g.one('ReduceMean', [normalised.name], { axes: [-1], keepdims: 1 });
    g.nodes.push({ opType: 'ReduceSumSquare', input: [g.one('Sub', [normalised.name, mean])], output: ['centered_energy'], attribute: [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [-1] }, { name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }], name: 'n_centered_energy' });
  }
  return serialise(
    g,
    [
      valueInfo('x', FLOAT, ['N', cfg.dModel]),
      valueInfo('feature_ids', INT64, ['F']),
      valueInfo('feature_weights', FLOAT, ['F']),
      valueInfo('feature_thresholds', FLOAT, ['F']),
    ],
    'F',
    decoder ? ['recon_err', 'centered_energy'] : [],
  );
}

/**
 * The ranking encodes over all d_sae pre-activations h [N, d_sae] → the kept values [N, k] and their feature
 * indices [N, k]. Ties go to the lower index: ONNX TopK with sorted=1 and ArgMax with select_last_index=0.
 *   topk (SAELens TopK, sparsify topk):  the k largest h, then ReLU;
 *   abstopk (SAELens AbsTopK):          the k largest |h|, their signed h (no ReLU);
 *   groupmax (sparsify):                relu(h) as k contiguous groups of d_sae/k, each group's maximum.
 */
function selectLatents(g: GraphBuilder, cfg: EncoderConfig & { dSae: number }, h: string): { kept: string; indices: string } {
  if (cfg.architecture === 'groupmax') {
    const size = cfg.dSae / cfg.k;
    const groups = g.one('Reshape', [g.one('Relu', [h]), g.int64s('group_shape', [0, cfg.k, size])]);
    const kept = g.one('ReduceMax', [groups], { axes: [2], keepdims: 0 });
    const inGroup = g.one('ArgMax', [groups], { axis: 2, keepdims: 0, select_last_index: 0 });
    const offsets = g.int64s('group_offsets', Array.from({ length: cfg.k }, (_, i) => i * size));
    return { kept, indices: g.one('Add', [inGroup, offsets]) };
  }
  const k = g.int64s('k', [cfg.k]);
  if (cfg.architecture === 'abstopk') {
    const indices = g.op('TopK', [g.one('Abs', [h]), k], { axis: -1, largest: 1, sorted: 1 }, 2)[1]!;
    return { kept: g.one('GatherElements', [h, indices], { axis: 1 }), indices };
  }
  const [values, indices] = g.op('TopK', [h, k], { axis: -1, largest: 1, sorted: 1 }, 2) as [string, string];
  return { kept: g.one('Relu', [values]), indices };
}

/** h = x @ dequant(W_enc) + b_enc through MatMulNBits with int8 activations (see quantize.ts). */
function int8Encode(g: GraphBuilder, cfg: EncoderConfig & { dSae: number }, x: string, q: Int8Encoder, bEnc: Float32Array): string {
  const product = g.op(
    'MatMulNBits',
    [x, g.uint8s('W_enc_int8', q.packed, [cfg.dSae, q.numBlocks, q.blockSize]), g.floats('W_enc_scales', q.scales, [cfg.dSae * q.numBlocks])],
    { K: cfg.dModel, N: cfg.dSae, bits: 8, block_size: q.blockSize, accuracy_level: INT8_ACCURACY_LEVEL },
    1,
    MS_DOMAIN,
  )[0]!;
  return g.one('Add', [product, g.floats('b_enc', bEnc, [cfg.dSae])]);
}

export interface SelectedWeights {
  /** W_enc[:, F] as [d_model, F]. */
  readonly encoderColumns: Float32Array;
  readonly bEnc: Float32Array;
  readonly bDec: Float32Array;
  readonly decoderNorm: Float32Array | undefined;
  /** JumpReLU thresholds of the selected features (exact encode of a jumprelu SAE only). */
  readonly jumpThreshold: Float32Array | undefined;
  /**
   * Gated SAEs (exact encode): the gate bias b_gate and the magnitude path's columns W_enc * exp(r_mag) of the
   * selected features; bEnc is then b_mag.
   */
  readonly gate?: { readonly bias: Float32Array; readonly magnitudeColumns: Float32Array } | undefined;
  readonly weights: Float32Array;
  readonly thresholds: Float32Array;
}

/**
 * The encode restricted to the pack's columns: relu(h_F), or relu(h_F) * (h_F > threshold_F) for an exact
 * JumpReLU encode. Used for relu/jumprelu SAEs and for the `selected_relu` mode of TopK SAEs.
 */
export function buildSelectedModel(cfg: EncoderConfig, w: SelectedWeights): BuiltModel {
  const f = w.weights.length;
  const g = new GraphBuilder();
  const x = preprocess(g, cfg, w.bDec);
  if (w.gate) {
    // GatedSAE.encode: [x W_enc + b_gate > 0] * relu(x (W_enc * exp(r_mag)) + b_mag).
    const gatePre = g.one('Gemm', [x, g.floats('W_enc_selected', w.encoderColumns, [cfg.dModel, f]), g.floats('b_gate_selected', w.gate.bias, [f])]);
    const open = g.one('Cast', [g.one('Greater', [gatePre, g.scalar('gate_zero', 0)])], { to: FLOAT });
    const magnitude = g.one('Relu', [g.one('Gemm', [x, g.floats('W_mag_selected', w.gate.magnitudeColumns, [cfg.dModel, f]), g.floats('b_mag_selected', w.bEnc, [f])])]);
    finish(g, g.one('Mul', [magnitude, open]), g.floats('feature_weights', w.weights, [f]), g.floats('feature_thresholds', w.thresholds, [f]));
    return serialise(g, [valueInfo('x', FLOAT, ['N', cfg.dModel])], f);
  }
  let h = g.one('Gemm', [x, g.floats('W_enc_selected', w.encoderColumns, [cfg.dModel, f]), g.floats('b_enc_selected', w.bEnc, [f])]);
  if (w.decoderNorm) h = g.one('Mul', [h, g.floats('decoder_norm_selected', w.decoderNorm, [f])]);
  let acts = g.one('Relu', [h]);
  if (w.jumpThreshold) {
    const open = g.one('Cast', [g.one('Greater', [h, g.floats('jump_threshold', w.jumpThreshold, [f])])], { to: FLOAT });
    acts = g.one('Mul', [acts, open]);
  }
  finish(g, acts, g.floats('feature_weights', w.weights, [f]), g.floats('feature_thresholds', w.thresholds, [f]));
  return serialise(g, [valueInfo('x', FLOAT, ['N', cfg.dModel])], f);
}

/**
 * A linear read-out: reward = x @ w + b, through a sigmoid when `probability`. The same onnxruntime path
 * (and execution provider) as the SAE graphs, for direction packs, probe packs and dual-verifier probes.
 */
export function buildLinearModel(dModel: number, weight: Float32Array, bias: number, output: 'logit' | 'probability'): BuiltModel {
  const g = new GraphBuilder();
  const column = g.one('MatMul', ['x', g.floats('linear_weight', weight, [dModel, 1])]);
  const logit = g.one('Add', [g.one('Squeeze', [column, g.int64s('axis1', [1])]), g.scalar('linear_bias', bias)]);
  g.nodes.push({ opType: output === 'probability' ? 'Sigmoid' : 'Identity', input: [logit], output: ['reward'], name: 'n_reward' });
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'mechreward',
    opsetImport: [{ domain: '', version: OPSET }],
    graph: { name: 'mechreward_linear', node: g.nodes, initializer: g.initializers, input: [valueInfo('x', FLOAT, ['N', dModel])], output: [valueInfo('reward', FLOAT, ['N'])] },
  });
  return { model: onnx.ModelProto.encode(model).finish(), externalData: g.externalData };
}
