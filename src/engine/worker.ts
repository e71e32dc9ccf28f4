// Engine worker thread: owns onnxruntime sessions and runs them, so a long session.run() never blocks the
// main thread's event loop (gRPC, HTTP, health and /metrics stay responsive). One job at a time.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';

import * as ort from 'onnxruntime-node';

import { buildFullTopKModel, buildLinearModel, buildSelectedModel, type BuiltModel } from './graph.js';
import { quantizeEncoderInt8 } from './quantize.js';
import type { FromWorker, InitMessage, ModelPlan, PackPlan, RunMessage, SessionSettings, ToWorker } from './protocol.js';
import { gather, gatherEncoderColumns, loadLinearWeights, loadSaeWeights, type LoadedSae } from './weights.js';

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
  return buildSelectedModel(cfg, {
    encoderColumns: gatherEncoderColumns(sae, weights, ids),
    bEnc: gather(weights.bEnc, ids),
    bDec: weights.bDec,
    decoderNorm: weights.decoderNorm ? gather(weights.decoderNorm, ids) : undefined,
    jumpThreshold: plan.mode === 'exact' && weights.threshold ? gather(weights.threshold, ids) : undefined,
    weights: Float32Array.from(plan.weights),
    thresholds: Float32Array.from(plan.thresholds),
  });
}

/** Builds every session; a function of its own so no weight array outlives it in a suspended async frame. */
async function createSessions(msg: InitMessage): Promise<Map<string, ort.InferenceSession>> {
  const sessions = new Map<string, ort.InferenceSession>();
  // Group models by SAE so each weights file is read once, then released once its sessions exist
  // (onnxruntime keeps its own copy of the initializers).
  const bySae = new Map<string, Exclude<ModelPlan, { kind: 'linear' }>[]>();
  for (const m of msg.models) {
    if (m.kind === 'linear') {
      const { weight, bias } = loadLinearWeights(m.readout);
      const built = buildLinearModel(m.readout.dModel, weight, bias, m.readout.output);
      sessions.set(m.id, await ort.InferenceSession.create(built.model, sessionOptions(msg.settings, built.externalData)));
    } else {
      bySae.set(m.sae.key, [...(bySae.get(m.sae.key) ?? []), m]);
    }
  }
  for (const models of bySae.values()) {
    const weights = loadSaeWeights(models[0]!.sae, models.some((m) => m.kind === 'full' && m.recon));
    for (const plan of models) {
      const built = buildModel(plan, weights);
      sessions.set(plan.id, await ort.InferenceSession.create(built.model, sessionOptions(msg.settings, built.externalData)));
    }
  }
  return sessions;
}

async function init(msg: InitMessage): Promise<void> {
  const sessions = await createSessions(msg);
  collectGarbage();
  const started = performance.now();
  for (const plan of msg.packs) {
    const feeds: Record<string, ort.Tensor> = {};
    if (plan.runtimeFeatures) {
      const f = plan.runtimeFeatures;
      feeds.feature_ids = new ort.Tensor('int64', BigInt64Array.from(f.ids, (id) => BigInt(id)), [f.ids.length]);
      feeds.feature_weights = new ort.Tensor('float32', Float32Array.from(f.weights), [f.weights.length]);
      feeds.feature_thresholds = new ort.Tensor('float32', Float32Array.from(f.thresholds), [f.thresholds.length]);
    }
    const runtime = { plan, session: sessions.get(plan.modelId)!, feeds, verifier: plan.verifierModelId ? sessions.get(plan.verifierModelId) : undefined };
    packs.set(plan.pack, runtime);
    // Warm-up: the first native run of a session is slow; readiness waits for it.
    const probe = new Float32Array(2 * plan.dModel).map((_, i) => Math.sin(i + 1));
    await runPack(runtime, probe, 2, true);
  }
  send({ type: 'ready', warmupMs: performance.now() - started });
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

async function run(msg: RunMessage): Promise<void> {
  const rt = packs.get(msg.pack);
  if (!rt) throw new Error(`pack ${msg.pack} is not loaded in this worker`);
  const started = performance.now();
  const { reward, acts, recon, verifier } = await runPack(rt, msg.rows, msg.numRows, msg.fetchActs);
  // Copy out of onnxruntime-owned memory into buffers we can transfer.
  const copies = { reward: reward.slice(), acts: acts?.slice(), recon: recon && { err: recon.err.slice(), energy: recon.energy.slice() }, verifier: verifier?.slice() };
  const transfer = [copies.reward, copies.acts, copies.recon?.err, copies.recon?.energy, copies.verifier].flatMap((a) => (a ? [a.buffer as ArrayBuffer] : []));
  send({ type: 'result', jobId: msg.jobId, ...copies, inferenceMs: performance.now() - started }, transfer);
}

port.on('message', (msg: ToWorker) => {
  if (msg.type === 'init') {
    init(msg).catch((err: unknown) => send({ type: 'init_error', message: err instanceof Error ? err.message : String(err) }));
  } else {
    run(msg).catch((err: unknown) => send({ type: 'run_error', jobId: msg.jobId, message: err instanceof Error ? err.message : String(err) }));
  }
});
