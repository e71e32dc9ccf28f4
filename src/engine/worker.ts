// Engine worker thread: owns onnxruntime sessions and runs them, so a long session.run() never blocks the
// main thread's event loop (gRPC, HTTP, health and /metrics stay responsive). One job at a time.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';

import * as ort from 'onnxruntime-node';

import { elementValue, firstNonFiniteBits, widenChecked } from '../numerics/widen.js';
import { buildFullTopKModel, buildLinearModel, buildSelectedModel, type BuiltModel } from './graph.js';
import { quantizeEncoderInt8 } from './quantize.js';
import type { FromWorker, InitMessage, ModelPlan, NonFiniteHit, PackPlan, RowInput, RunMessage, SessionSettings, ToWorker } from './protocol.js';
import { gather, gatherEncoderColumns, gatherMagnitudeColumns, loadLinearWeights, loadSaeWeights, type LoadedSae } from './weights.js';

if (!parentPort) throw new Error('engine worker must run in a worker thread');
const port = parentPort;

interface PackRuntime {
  readonly plan: PackPlan;
  readonly session: ort.InferenceSession;
  readonly feeds: Record<string, ort.Tensor>;
  readonly verifier: ort.InferenceSession | undefined;
}

const packs = new Map<string, PackRuntime>();

function send(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

function sessionOptions(s: SessionSettings, external: BuiltModel['externalData']): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [s.executionProvider],
    intraOpNumThreads: s.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    enableCpuMemArena: s.cpuMemArena,
    externalData: external,
    // Spinning threads burn the cores that the event loop and other sessions need; values must be strings.
    extra: { session: { intra_op: { allow_spinning: s.allowSpinning ? '1' : '0' } } },
  };
}

function buildModel(plan: Exclude<ModelPlan, { kind: 'linear' }>, weights: LoadedSae): BuiltModel {
  const sae = plan.sae;
  const cfg = { dModel: sae.dModel, architecture: sae.architecture, k: sae.k, applyBDecToInput: sae.applyBDecToInput, normalization: sae.normalization };
  if (plan.kind === 'full') {
    const int8 = plan.int8 ? quantizeEncoderInt8(weights.encoder, sae.dModel, sae.dSae, weights.encoderTransposed) : undefined;
    return buildFullTopKModel({ ...cfg, dSae: sae.dSae }, weights, plan.recon ? weights.decoder : undefined, int8);
  }
  const ids = plan.featureIds;
  const encoderColumns = gatherEncoderColumns(sae, weights, ids);
  return buildSelectedModel(cfg, {
    encoderColumns,
    bEnc: gather(weights.bEnc, ids),
    bDec: weights.bDec,
    decoderNorm: weights.decoderNorm ? gather(weights.decoderNorm, ids) : undefined,
    jumpThreshold: plan.mode === 'exact' && weights.threshold ? gather(weights.threshold, ids) : undefined,
    gate: plan.mode === 'exact' && weights.gate ? { bias: gather(weights.gate.bias, ids), magnitudeColumns: gatherMagnitudeColumns(encoderColumns, weights.gate.magnitudeScale, ids) } : undefined,
    weights: Float32Array.from(plan.weights),
    thresholds: Float32Array.from(plan.thresholds),
  });
}

const sessions = new Map<string, ort.InferenceSession>();
let settings: SessionSettings | undefined;
let faultInjection = false;
let exitBeforeNextRun = false;

/**
 * Builds the sessions this worker does not hold yet; a function of its own so no weight array outlives it in
 * a suspended async frame. Returns the ids it built.
 */
async function createSessions(models: readonly ModelPlan[]): Promise<string[]> {
  const built: string[] = [];
  // Group models by SAE so each weights file is read once, then released once its sessions exist
  // (onnxruntime keeps its own copy of the initializers).
  const bySae = new Map<string, Exclude<ModelPlan, { kind: 'linear' }>[]>();
  for (const m of models) {
    if (sessions.has(m.id)) continue;
    if (m.kind === 'linear') {
      const { weight, bias } = loadLinearWeights(m.readout);
      const model = buildLinearModel(m.readout.dModel, weight, bias, m.readout.output);
      sessions.set(m.id, await ort.InferenceSession.create(model.model, sessionOptions(settings!, model.externalData)));
      built.push(m.id);
    } else {
      bySae.set(m.sae.key, [...(bySae.get(m.sae.key) ?? []), m]);
    }
  }
  for (const group of bySae.values()) {
    const weights = loadSaeWeights(group[0]!.sae, group.some((m) => m.kind === 'full' && m.recon));
    for (const plan of group) {
      const model = buildModel(plan, weights);
      sessions.set(plan.id, await ort.InferenceSession.create(model.model, sessionOptions(settings!, model.externalData)));
      built.push(plan.id);
    }
  }
  return built;
}

/**
 * Makes the given packs servable: builds missing sessions, then warms up each pack not held yet. On failure
 * everything this call added is dropped again, so a rejected reload leaves the worker as it was.
 */
async function install(models: readonly ModelPlan[], plans: readonly PackPlan[]): Promise<number> {
  const added: string[] = [];
  let built: string[] = [];
  try {
    built = await createSessions(models);
    collectGarbage();
    const started = performance.now();
    for (const plan of plans) {
      if (packs.has(plan.pack)) continue;
      const session = sessions.get(plan.modelId);
      if (!session) throw new Error(`no session ${plan.modelId} for pack ${plan.pack}`);
      const feeds: Record<string, ort.Tensor> = {};
      if (plan.runtimeFeatures) {
        const f = plan.runtimeFeatures;
        feeds.feature_ids = new ort.Tensor('int64', BigInt64Array.from(f.ids, (id) => BigInt(id)), [f.ids.length]);
        feeds.feature_weights = new ort.Tensor('float32', Float32Array.from(f.weights), [f.weights.length]);
        feeds.feature_thresholds = new ort.Tensor('float32', Float32Array.from(f.thresholds), [f.thresholds.length]);
      }
      const verifier = plan.verifierModelId ? sessions.get(plan.verifierModelId) : undefined;
      if (plan.verifierModelId && !verifier) throw new Error(`no verifier session ${plan.verifierModelId} for pack ${plan.pack}`);
      const runtime = { plan, session, feeds, verifier };
      // Warm-up: the first native run of a session is slow; readiness (and a reload) waits for it.
      const probe = new Float32Array(2 * plan.dModel).map((_, i) => Math.sin(i + 1));
      await runPack(runtime, probe, 2, true);
      packs.set(plan.pack, runtime);
      added.push(plan.pack);
    }
    return performance.now() - started;
  } catch (err) {
    for (const key of added) packs.delete(key);
    await releaseSessions(built);
    throw err;
  }
}

/** Releases the given sessions unless a pack still uses them. */
async function releaseSessions(ids: readonly string[]): Promise<void> {
  const used = new Set([...packs.values()].flatMap((p) => [p.plan.modelId, ...(p.plan.verifierModelId ? [p.plan.verifierModelId] : [])]));
  for (const id of ids) {
    const session = sessions.get(id);
    if (!session || used.has(id)) continue;
    sessions.delete(id);
    await session.release();
  }
}

async function init(msg: InitMessage): Promise<void> {
  settings = msg.settings;
  faultInjection = msg.faultInjection;
  const warmupMs = await install(msg.models, msg.packs);
  send({ type: 'ready', warmupMs });
}

async function retire(keys: readonly string[]): Promise<void> {
  const models = new Set<string>();
  for (const key of keys) {
    const rt = packs.get(key);
    if (!rt) continue;
    packs.delete(key);
    models.add(rt.plan.modelId);
    if (rt.plan.verifierModelId) models.add(rt.plan.verifierModelId);
  }
  await releaseSessions([...models]);
}

/**
 * onnxruntime copied every initializer; our float32 copies of the weights (hundreds of MB for a large SAE) are
 * garbage now, but an idle worker may not collect them for a long time, and resident memory would stay at
 * about three times the weights. Collect once, right after loading.
 */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function runPack(rt: PackRuntime, rows: Float32Array, numRows: number, wantActs: boolean) {
  // Linear sessions (direction and probe packs) have no feature columns to fetch.
  const fetchActs = wantActs && rt.plan.numColumns > 0;
  const x = new ort.Tensor('float32', rows, [numRows, rt.plan.dModel]);
  const fetches = ['reward', ...(fetchActs ? ['acts'] : []), ...(rt.plan.recon ? ['recon_err', 'centered_energy'] : [])];
  const out = await rt.session.run({ ...rt.feeds, x }, fetches);
  const verifier = rt.verifier ? ((await rt.verifier.run({ x }, ['reward'])).reward!.data as Float32Array) : undefined;
  return {
    verifier,
    reward: out.reward!.data as Float32Array,
    acts: fetchActs ? (out.acts!.data as Float32Array) : undefined,
    recon: rt.plan.recon ? { err: out.recon_err!.data as Float32Array, energy: out.centered_energy!.data as Float32Array } : undefined,
  };
}

/** The batch's float32 rows; reused across runs (one run at a time), so large batches cost no allocation. */
let scratch = new Float32Array(0);
/** Input slabs shared by the main thread, by id: each arrives once (engine/buffers.ts). */
const slabs = new Map<number, SharedArrayBuffer | ArrayBuffer>();

function inputBytes(input: RowInput): SharedArrayBuffer | ArrayBuffer {
  if (input.bytes) {
    if (input.slab >= 0) slabs.set(input.slab, input.bytes);
    return input.bytes;
  }
  const known = slabs.get(input.slab);
  if (!known) throw new Error(`input slab ${input.slab} was never sent to this worker`);
  return known;
}

/**
 * Widens one input's fed rows into `x` from row `firstRow` and checks every part (prompt rows too) for NaN/Inf
 * in the same pass. Returns the first non-finite value, if any; the rows are written regardless.
 */
function assemble(input: RowInput, dModel: number, x: Float32Array, firstRow: number): NonFiniteHit | undefined {
  const bytes = inputBytes(input);
  let hit: NonFiniteHit | undefined;
  let row = firstRow;
  for (const part of input.parts) {
    const count = part.rows * dModel;
    const at = part.feed ? widenChecked(bytes, part.byteOffset, count, part.dtype, x, row * dModel) : firstNonFiniteBits(bytes, part.byteOffset, count, part.dtype);
    if (part.feed) row += part.rows;
    if (at >= 0 && !hit) hit = { seq: part.seq, token: part.firstToken + Math.floor(at / dModel), dim: at % dModel, value: elementValue(bytes, part.byteOffset, at, part.dtype) };
  }
  return hit;
}

async function run(msg: RunMessage): Promise<void> {
  if (exitBeforeNextRun) {
    // Tests only (--fault-injection): a worker that dies. Exiting here, before session.run() starts, ends
    // this thread alone; terminating a worker inside a native run would abort the whole process.
    process.exit(70);
  }
  const rt = packs.get(msg.pack);
  if (!rt) throw new Error(`pack ${msg.pack} is not loaded in this worker`);
  const started = performance.now();
  const dModel = rt.plan.dModel;
  const size = msg.numRows * dModel;
  if (scratch.length < size) scratch = new Float32Array(size);
  const x = scratch.subarray(0, size);
  let row = 0;
  const nonFinite = msg.inputs.map((input) => {
    const hit = assemble(input, dModel, x, row);
    row += input.numRows;
    return hit;
  });
  if (nonFinite.every((h) => h)) {
    // Every job of the batch fails on its input: no engine work at all.
    send({ type: 'result', jobId: msg.jobId, reward: new Float32Array(0), acts: undefined, recon: undefined, verifier: undefined, inferenceMs: 0, nonFinite });
    return;
  }
  const { reward, acts, recon, verifier } = await runPack(rt, x, msg.numRows, msg.fetchActs);
  // Copy out of onnxruntime-owned memory into buffers we can transfer.
  const copies = { reward: reward.slice(), acts: acts?.slice(), recon: recon && { err: recon.err.slice(), energy: recon.energy.slice() }, verifier: verifier?.slice() };
  const transfer = [copies.reward, copies.acts, copies.recon?.err, copies.recon?.energy, copies.verifier].flatMap((a) => (a ? [a.buffer as ArrayBuffer] : []));
  send({ type: 'result', jobId: msg.jobId, ...copies, inferenceMs: performance.now() - started, nonFinite }, transfer);
}

const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

port.on('message', (msg: ToWorker) => {
  if (msg.type === 'init') {
    init(msg).catch((err: unknown) => send({ type: 'init_error', message: messageOf(err) }));
  } else if (msg.type === 'load') {
    install(msg.models, msg.packs).then(
      (warmupMs) => send({ type: 'loaded', loadId: msg.loadId, warmupMs }),
      (err: unknown) => send({ type: 'load_error', loadId: msg.loadId, message: messageOf(err) }),
    );
  } else if (msg.type === 'retire') {
    void retire(msg.packs);
  } else if (msg.type === 'fault') {
    if (faultInjection) exitBeforeNextRun = true;
  } else {
    run(msg).catch((err: unknown) => send({ type: 'run_error', jobId: msg.jobId, message: messageOf(err) }));
  }
});
