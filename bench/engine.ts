// Engine-only timings: the same ONNX graphs the server builds (src/engine/graph.ts), run in this process with
// the server's default session settings, beside a MatMul-only graph of the same shape (the GEMM ceiling).
import os from 'node:os';

import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';

import { buildFullTopKModel, buildSelectedModel, type BuiltModel } from '../src/engine/graph.js';
import { quantizeEncoderInt8 } from '../src/engine/quantize.js';
import { featureIds, randomFill, type Shape } from './shapes.js';

const { onnx } = onnxProto;

export function sessionOptions(external: BuiltModel['externalData'], threads = os.availableParallelism()): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    externalData: external,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

export interface Weights {
  readonly encoder: Float32Array;
  readonly bEnc: Float32Array;
  readonly bDec: Float32Array;
}

export function makeWeights(shape: Shape): Weights {
  return {
    encoder: randomFill(shape.dModel * shape.dSae, 1 / Math.sqrt(shape.dModel), 11),
    bEnc: randomFill(shape.dSae, 0.1, 12),
    bDec: randomFill(shape.dModel, 0.1, 13),
  };
}

const cfgOf = (shape: Shape) => ({ dModel: shape.dModel, architecture: 'topk' as const, k: shape.k, applyBDecToInput: true, normalization: 'none' as const });

export function fullModel(shape: Shape, w: Weights, int8 = false): BuiltModel {
  const q = int8 ? quantizeEncoderInt8(w.encoder, shape.dModel, shape.dSae, false) : undefined;
  return buildFullTopKModel({ ...cfgOf(shape), dSae: shape.dSae }, { encoder: w.encoder, encoderTransposed: false, bEnc: w.bEnc, bDec: w.bDec, decoderNorm: undefined }, undefined, q);
}

export function selectedModel(shape: Shape, w: Weights): BuiltModel {
  const ids = featureIds(shape);
  const columns = new Float32Array(shape.dModel * ids.length);
  for (let d = 0; d < shape.dModel; d++) ids.forEach((id, j) => (columns[d * ids.length + j] = w.encoder[d * shape.dSae + id]!));
  return buildSelectedModel(cfgOf(shape), {
    encoderColumns: columns,
    bEnc: Float32Array.from(ids, (id) => w.bEnc[id]!),
    bDec: w.bDec,
    decoderNorm: undefined,
    jumpThreshold: undefined,
    weights: Float32Array.from(ids, (_, i) => (i % 2 ? -1 : 1)),
    thresholds: new Float32Array(ids.length),
  });
}

/** x @ W_enc and a row sum, so the [N, d_sae] product is computed but not copied out to JavaScript. */
export function gemmCeilingModel(shape: Shape, w: Weights): BuiltModel {
  const bytes = new Uint8Array(w.encoder.buffer, w.encoder.byteOffset, w.encoder.byteLength);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'gemm_ceiling',
      node: [
        { opType: 'MatMul', input: ['x', 'W_enc'], output: ['h'] },
        { opType: 'ReduceSum', input: ['h', 'axis'], output: ['y'], attribute: [{ name: 'keepdims', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      ],
      initializer: [
        {
          name: 'W_enc', dims: [shape.dModel, shape.dSae], dataType: onnx.TensorProto.DataType.FLOAT, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
          externalData: [{ key: 'location', value: 'W_enc.bin' }, { key: 'offset', value: '0' }, { key: 'length', value: String(bytes.byteLength) }],
        },
        { name: 'axis', dims: [1], dataType: onnx.TensorProto.DataType.INT64, int64Data: [-1] },
      ],
      input: [{ name: 'x', type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }, { dimValue: shape.dModel }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimParam: 'N' }] } } } }],
    },
  });
  return { model: onnx.ModelProto.encode(model).finish(), externalData: [{ path: 'W_enc.bin', data: bytes }] };
}

export async function createSession(built: BuiltModel, threads?: number): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(built.model, sessionOptions(built.externalData, threads));
}

export function featureFeeds(shape: Shape): Record<string, ort.Tensor> {
  const ids = featureIds(shape);
  return {
    feature_ids: new ort.Tensor('int64', BigInt64Array.from(ids, (i) => BigInt(i)), [ids.length]),
    feature_weights: new ort.Tensor('float32', Float32Array.from(ids, (_, i) => (i % 2 ? -1 : 1)), [ids.length]),
    feature_thresholds: new ort.Tensor('float32', new Float32Array(ids.length), [ids.length]),
  };
}

/** Median seconds per run over repeats (2 warm-ups; at least 3 timed runs or 1.5 s). */
export async function timeRuns(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, fetch: string[]): Promise<number> {
  for (let i = 0; i < 2; i++) await session.run(feeds, fetch);
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 3 || (performance.now() - start < 1500 && times.length < 50)) {
    const t0 = performance.now();
    await session.run(feeds, fetch);
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export function inputTensor(shape: Shape, rows: number): ort.Tensor {
  return new ort.Tensor('float32', randomFill(rows * shape.dModel, 2, 17 + rows), [rows, shape.dModel]);
}
