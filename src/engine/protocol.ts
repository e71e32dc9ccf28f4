// Messages between the engine pool (main thread) and its workers. Plain data only: everything here crosses
// postMessage (structured clone; input rows live in shared slabs, result arrays are transferred, not copied).
import type { WireDType } from '../numerics/widen.js';
import type { LinearReadout } from '../packs/linear.js';
import type { SaeSpec } from '../packs/sae.js';

export interface SessionSettings {
  readonly executionProvider: 'cpu' | 'cuda';
  readonly intraOpThreads: number;
  readonly allowSpinning: boolean;
  readonly cpuMemArena: boolean;
}

/** One ONNX session to build in each worker. */
export type ModelPlan =
  | {
      readonly kind: 'full';
      readonly id: string;
      readonly sae: SaeSpec;
      /** Also decode the TopK code and output per-token reconstruction error (costs a second GEMM and W_dec). */
      readonly recon: boolean;
      /** Encoder product in int8 (MatMulNBits) for `topk_int8` packs. */
      readonly int8: boolean;
    }
  | {
      readonly kind: 'selected';
      readonly id: string;
      readonly sae: SaeSpec;
      /** Exact encode (relu / jumprelu SAEs) or the selected_relu shortcut. */
      readonly mode: 'exact' | 'selected_relu';
      readonly featureIds: readonly number[];
      readonly weights: readonly number[];
      readonly thresholds: readonly number[];
    }
  | {
      /** r = w . x + b (through a sigmoid for a probability output): direction and probe packs, verifiers. */
      readonly kind: 'linear';
      readonly id: string;
      readonly readout: LinearReadout;
    };

/** How one pack runs: which session, and the feature feeds a shared full-SAE session needs. */
export interface PackPlan {
  readonly pack: string;
  readonly modelId: string;
  readonly dModel: number;
  /** Columns of `acts`: the pack's reward features, then its canary features, then its hack-signature features. */
  readonly numColumns: number;
  /** Fetch recon_err and centered_energy (the pack has an off-distribution bound). */
  readonly recon: boolean;
  readonly runtimeFeatures: { readonly ids: readonly number[]; readonly weights: readonly number[]; readonly thresholds: readonly number[] } | undefined;
  /** The dual verifier's session (a linear logit), run on the same rows after the pack's own. */
  readonly verifierModelId: string | undefined;
}

export interface InitMessage {
  readonly type: 'init';
  readonly settings: SessionSettings;
  readonly models: readonly ModelPlan[];
  readonly packs: readonly PackPlan[];
  /** Honour FaultMessage (tests only, --fault-injection). */
  readonly faultInjection: boolean;
}

/** Hot reload: build the sessions of packs this worker does not hold yet and warm them up; keep the rest. */
export interface LoadMessage {
  readonly type: 'load';
  readonly loadId: number;
  readonly models: readonly ModelPlan[];
  readonly packs: readonly PackPlan[];
}

/** Drop these packs (no job refers to them any more) and release sessions no remaining pack uses. */
export interface RetireMessage {
  readonly type: 'retire';
  readonly packs: readonly string[];
}

/** Tests only: exit the worker thread when the next run arrives, before onnxruntime starts it. */
export interface FaultMessage {
  readonly type: 'fault';
  readonly fault: 'exit_before_next_run';
}

/**
 * A run of consecutive token rows of one sequence inside a RowInput's bytes. `feed` rows go to the graph;
 * the others (prompt rows) are only checked for NaN/Inf. `seq` and `firstToken` name the rows in errors.
 */
export interface RowPart {
  readonly dtype: WireDType;
  /** Offset in RowInput.bytes; a multiple of 4. */
  readonly byteOffset: number;
  readonly rows: number;
  readonly feed: boolean;
  readonly seq: number;
  readonly firstToken: number;
}

/**
 * Token rows as the wire carried them (F32, F16 or BF16 bytes, copied once on the main thread into a shared
 * slab, engine/buffers.ts). The worker widens the fed parts to float32 and checks every part for NaN/Inf in
 * the same pass, reading the slab in place.
 */
export interface RowInput {
  /** The slab's id (workers cache slabs by id), or -1 for bytes sent whole. */
  readonly slab: number;
  /** In a RunMessage: absent when the worker already holds this slab. */
  readonly bytes?: SharedArrayBuffer | ArrayBuffer;
  readonly parts: readonly RowPart[];
  /** Fed rows (the graph's N for this input). */
  readonly numRows: number;
}

/** The first NaN or infinity of one input: which sequence, token and dimension, and its value. */
export interface NonFiniteHit {
  readonly seq: number;
  readonly token: number;
  readonly dim: number;
  readonly value: number;
}

export interface RunMessage {
  readonly type: 'run';
  readonly jobId: number;
  readonly pack: string;
  /** One input per job of the batch, run as one [sum of numRows, d_model] batch in this order. */
  readonly inputs: readonly RowInput[];
  readonly numRows: number;
  readonly fetchActs: boolean;
}

export type ToWorker = InitMessage | LoadMessage | RetireMessage | FaultMessage | RunMessage;

/** Per token: ||x' - x_hat||^2 and ||x' - mean(x')||^2, x' being the SAE's (normalised) input. */
export interface ReconOutputs {
  readonly err: Float32Array;
  readonly energy: Float32Array;
}

export type FromWorker =
  | { readonly type: 'ready'; readonly warmupMs: number }
  | { readonly type: 'init_error'; readonly message: string }
  | { readonly type: 'loaded'; readonly loadId: number; readonly warmupMs: number }
  | { readonly type: 'load_error'; readonly loadId: number; readonly message: string }
  | {
      readonly type: 'result';
      readonly jobId: number;
      readonly reward: Float32Array;
      readonly acts: Float32Array | undefined;
      readonly recon: ReconOutputs | undefined;
      /** Per token: the verifier probe's logit, when the pack has a dual verifier. */
      readonly verifier: Float32Array | undefined;
      readonly inferenceMs: number;
      /** Per input of the run: its first non-finite value (that job fails), or undefined. */
      readonly nonFinite: readonly (NonFiniteHit | undefined)[];
    }
  | { readonly type: 'run_error'; readonly jobId: number; readonly message: string };
