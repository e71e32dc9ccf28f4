// The scoring use case, transport-neutral: pack lookup → admission → validation and decoding → engine (in
// chunks of at most max_batch_tokens rows) → per-token rewards, pooling and canary flags.
import { setMaxListeners } from 'node:events';

import { MechRewardError } from '../errors.js';
import type { EngineRunResult } from '../engine/pool.js';
import type { Slab } from '../engine/buffers.js';
import type { RowInput } from '../engine/protocol.js';
import { engineKey, isValidPackName, type Pack } from '../packs/registry.js';
import type { Admission } from './admission.js';
import { decodeSequences, type SequenceInput } from './decode.js';
import { hackSignatureFlag, offDistributionFlag, textRepetitionFlag, type CanaryFlag } from './canary-rules.js';
import { pool } from './pooling.js';
import { checkRunId } from './run-id.js';
import { batchFactor, checkTokens, disagreementRate, type Disagreement } from './verifier.js';

export interface ScoreInput {
  readonly pack: string;
  readonly sequences: readonly SequenceInput[];
  readonly runId: string;
  /** The trainer's global step, when the client sent one (kept with the run's history point). */
  readonly step?: number;
}

export type { CanaryFlag };

export interface SequenceScore {
  readonly tokenRewards: Float32Array;
  readonly reward: number;
  readonly flags: CanaryFlag[];
  /** The response's reconstruction FVU when the pack has an off-distribution bound. */
  readonly fvu: number | undefined;
  /** Dual verifier: share of the response's rewarded tokens whose sign the probe contradicts (undefined without one). */
  readonly verifierDisagreement: number | undefined;
  /** Factor the verifier's batch_downweight applied to this response's rewards (1 when none). */
  readonly verifierFactor: number;
  /** The verifier's token counts behind the rate (undefined without one). */
  readonly verifierTokens: Disagreement | undefined;
}

/** One scored request that names a run, as the scorer hands it on. */
export interface ScoredBatch {
  readonly runId: string;
  readonly pack: Pack;
  readonly sequences: readonly SequenceInput[];
  /** The sink may add flags (the reward-outlier rule); the reply carries them. */
  readonly results: SequenceScore[];
  /** The trainer's global step, when the client sent one (kept with the run's history point). */
  readonly step?: number;
}

/**
 * Where the scorer hands every scored batch that names a run (the run monitor). The scorer waits for the
 * promise before it replies, so a sink that resolves only once the batch is durable makes every
 * acknowledged count durable; how and when it stores is the sink's business, not the core's.
 */
export interface ScoredBatchSink {
  accept(batch: ScoredBatch): Promise<void>;
}

export interface ScoreOutput {
  readonly pack: string;
  readonly results: SequenceScore[];
  readonly tokens: number;
  readonly queueMs: number;
  readonly inferenceMs: number;
}

/** What the scorer needs from the engine; the EnginePool provides it. */
export interface Engine {
  /** Throws MR_ERR_OVERLOADED unless the queue has room for `rows` more token rows. */
  reserve(rows: number): void;
  /** A shared slab for a RowInput's bytes (the engine recycles them). */
  inputBuffer(byteLength: number): Slab;
  /** Hands back the slab of an input that will not be passed to run(). */
  releaseInput(input: Pick<RowInput, 'slab'>): void;
  /** Rejects with MR_ERR_NONFINITE_INPUT (naming sequence, token and dim) when a row holds NaN/Inf. */
  run(pack: string, input: RowInput, fetchActs: boolean, signal?: AbortSignal): Promise<EngineRunResult>;
}

export interface ScorerLimits {
  readonly maxTokensPerRequest: number;
  /** Unlimited when absent (the stage-gate runner scores its own data). */
  readonly maxSequencesPerRequest?: number;
  readonly maxBatchTokens: number;
}

export class Scorer {
  constructor(
    private packs: ReadonlyMap<string, Pack>,
    private readonly engine: Engine,
    private readonly admission: Admission,
    private readonly limits: ScorerLimits,
    private readonly sink?: ScoredBatchSink,
  ) {}

  /** The packs being served now. */
  get current(): ReadonlyMap<string, Pack> {
    return this.packs;
  }

  /**
   * Swaps the served packs in one assignment (hot reload). A request already past getPack() keeps the Pack
   * object it looked up, so it finishes on the version it started with.
   */
  replacePacks(packs: ReadonlyMap<string, Pack>): void {
    this.packs = packs;
  }

  getPack(name: string): Pack {
    if (typeof name !== 'string' || !isValidPackName(name)) {
      throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `pack: ${JSON.stringify(name)} is not a valid pack name (letters, digits, . _ -, at most 128, not starting with a dot)`);
    }
    const pack = this.packs.get(name);
    if (!pack) {
      const known = [...this.packs.keys()].join(', ') || '(none)';
      throw new MechRewardError('MR_ERR_PACK_NOT_FOUND', `pack: ${JSON.stringify(name)} is not loaded (loaded: ${known})`);
    }
    return pack;
  }

  /**
   * Scores a request. Every sequence's activations are read (validated and copied into the engine's slabs)
   * before score() returns its promise, never after: a transport may drop its references to the request's
   * bytes as soon as the call returns (transports/grpc/server.ts does, so they die young).
   */
  async score(input: ScoreInput, signal?: AbortSignal): Promise<ScoreOutput> {
    const pack = this.getPack(input.pack);
    checkRunId(input.runId);
    const release = this.admission.tryAcquire();
    try {
      return await this.scoreAdmitted(pack, input, signal);
    } finally {
      release();
    }
  }

  private async scoreAdmitted(pack: Pack, input: ScoreInput, signal: AbortSignal | undefined): Promise<ScoreOutput> {
    const dModel = pack.dModel;
    // Chunks bound onnxruntime's arena (it keeps the largest [rows, d_sae] buffer it has seen) and let other
    // requests interleave between chunks; the pool merges small chunks of concurrent requests into one run.
    const batch = decodeSequences(
      input.sequences,
      dModel,
      pack.name,
      {
        maxTokensPerRequest: this.limits.maxTokensPerRequest,
        maxSequencesPerRequest: this.limits.maxSequencesPerRequest ?? Number.POSITIVE_INFINITY,
        rejectZeroNorm: pack.sae?.normalization === 'constant_norm_rescale',
      },
      this.limits.maxBatchTokens,
      { take: (bytes) => this.engine.inputBuffer(bytes), giveBack: (slab) => this.engine.releaseInput({ slab }) },
    );
    const { features, canaries, monitor } = pack.spec;
    const fetchActs = canaries.length > 0 || monitor.hackSignatures.length > 0;
    const numColumns = features.length + canaries.length + monitor.hackSignatures.reduce((n, h) => n + h.features.length, 0);
    const reward = new Float32Array(batch.totalRows);
    const acts = fetchActs ? new Float32Array(batch.totalRows * numColumns) : undefined;
    const recon = monitor.fvuBound !== undefined ? { err: new Float32Array(batch.totalRows), energy: new Float32Array(batch.totalRows) } : undefined;
    const verifier = pack.verifier ? new Float32Array(batch.totalRows) : undefined;

    // Refuse now, before any chunk is queued, if the queue cannot take the whole request.
    try {
      this.engine.reserve(batch.totalRows);
    } catch (err) {
      for (const c of batch.chunks) this.engine.releaseInput(c);
      throw err;
    }
    // One signal for all chunks: aborted when the caller goes away or when any chunk fails, so the rest of a
    // failed request leaves the queue instead of costing engine time.
    const chunks = new AbortController();
    setMaxListeners(0, chunks.signal); // one listener per queued chunk
    const abortChunks = (): void => chunks.abort();
    if (signal?.aborted) chunks.abort();
    signal?.addEventListener('abort', abortChunks, { once: true });
    const runs: Promise<void>[] = [];
    let queueMs = 0;
    let inferenceMs = 0;
    let next = 0;
    for (const rows of batch.chunks) {
      const start = next;
      next += rows.numRows;
      runs.push(
        this.engine.run(engineKey(pack), rows, fetchActs, chunks.signal).then((out) => {
          reward.set(out.reward, start);
          if (acts && out.acts) acts.set(out.acts, start * numColumns);
          if (recon && out.recon) {
            recon.err.set(out.recon.err, start);
            recon.energy.set(out.recon.energy, start);
          }
          if (verifier && out.verifier) verifier.set(out.verifier, start);
          queueMs = Math.max(queueMs, out.queueMs);
          inferenceMs += out.inferenceMs;
        }),
      );
    }
    try {
      await Promise.all(runs);
    } catch (err) {
      chunks.abort();
      throw err;
    } finally {
      signal?.removeEventListener('abort', abortChunks);
    }

    const tokenRewards = input.sequences.map((s, i) => {
      const first = batch.offsets[i]!;
      const count = s.num_tokens - s.score_from;
      const values = new Float32Array(s.num_tokens);
      values.set(reward.subarray(first, first + count), s.score_from);
      const at = firstNonFiniteNumber(values);
      if (at >= 0) {
        throw new MechRewardError('MR_ERR_NONFINITE_OUTPUT', `sequences[${i}]: the reward at token ${at} is not finite; the activations are too large for float32 arithmetic`);
      }
      return values;
    });
    // The dual verifier, before pooling: it changes the per-token rewards the pooled reward is made of.
    let disagreements: Disagreement[] | undefined;
    let factor = 1;
    if (verifier && pack.spec.verifier) {
      const spec = pack.spec.verifier;
      disagreements = input.sequences.map((s, i) => {
        // The verifier's logits of this response, indexed like its token rewards (prompt rows were never run).
        const logits = new Float32Array(s.num_tokens);
        logits.set(verifier.subarray(batch.offsets[i]!, batch.offsets[i]! + s.num_tokens - s.score_from), s.score_from);
        return checkTokens(tokenRewards[i]!, logits, s.score_from, s.num_tokens, spec.mode === 'token_gate');
      });
      factor = batchFactor(spec, disagreements);
      if (factor !== 1) for (const values of tokenRewards) for (let t = 0; t < values.length; t++) values[t] = values[t]! * factor;
    }

    const results = input.sequences.map((s, i): SequenceScore => {
      const first = batch.offsets[i]!;
      const count = s.num_tokens - s.score_from;
      const flags = acts ? [...canaryFlags(pack, acts, numColumns, first, count, s.score_from), ...hackFlags(pack, acts, numColumns, first, count)] : [];
      let fvu: number | undefined;
      if (recon) {
        let err = 0;
        let energy = 0;
        for (let r = first; r < first + count; r++) (err += recon.err[r]!), (energy += recon.energy[r]!);
        fvu = energy > 0 ? err / energy : undefined;
        const flag = fvu === undefined ? undefined : offDistributionFlag(fvu, monitor.fvuBound!);
        if (flag) flags.push(flag);
      }
      const textFlag = textRepetitionFlag(s.text ?? '', s.expected_answer ?? '');
      if (textFlag) flags.push(textFlag);
      const values = tokenRewards[i]!;
      const verifierDisagreement = disagreements ? disagreementRate(disagreements[i]!) : undefined;
      return { tokenRewards: values, reward: pool(values, s.score_from, s.num_tokens, pack.spec.pooling), flags, fvu, verifierDisagreement, verifierFactor: factor, verifierTokens: disagreements?.[i] };
    });
    if (input.runId && this.sink) await this.sink.accept({ runId: input.runId, pack, sequences: input.sequences, results, step: input.step });
    return { pack: pack.name, results, tokens: batch.totalRows, queueMs, inferenceMs };
  }
}

function firstNonFiniteNumber(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) return i;
  return -1;
}

/** Hack-signature ratio rule over the response rows (see core/canary-rules.ts). */
function hackFlags(pack: Pack, acts: Float32Array, numColumns: number, firstRow: number, count: number): CanaryFlag[] {
  const { features, canaries, monitor } = pack.spec;
  if (monitor.hackSignatures.length === 0) return [];
  let rewardMass = 0;
  for (let r = 0; r < count; r++) {
    const base = (firstRow + r) * numColumns;
    features.forEach((f, j) => {
      if (f.weight > 0) rewardMass += f.weight * acts[base + j]!;
    });
  }
  const flags: CanaryFlag[] = [];
  let column = features.length + canaries.length;
  for (const sig of monitor.hackSignatures) {
    let mass = 0;
    for (let r = 0; r < count; r++) {
      const base = (firstRow + r) * numColumns;
      for (let j = 0; j < sig.features.length; j++) mass += acts[base + column + j]!;
    }
    column += sig.features.length;
    const flag = hackSignatureFlag(sig, mass, rewardMass);
    if (flag) flags.push(flag);
  }
  return flags;
}

/** A canary fires when its feature's activation on any response token exceeds the pack's threshold. */
function canaryFlags(pack: Pack, acts: Float32Array, numColumns: number, firstRow: number, count: number, scoreFrom: number): CanaryFlag[] {
  const flags: CanaryFlag[] = [];
  pack.spec.canaries.forEach((c, j) => {
    const column = pack.spec.features.length + j;
    let max = -Infinity;
    let argmax = 0;
    for (let r = 0; r < count; r++) {
      const v = acts[(firstRow + r) * numColumns + column]!;
      if (v > max) (max = v), (argmax = r);
    }
    if (max > c.threshold) {
      flags.push({
        name: c.name,
        reason: `feature ${c.feature} reached ${max.toPrecision(4)} > threshold ${c.threshold} at token ${scoreFrom + argmax}`,
        value: max,
      });
    }
  });
  return flags;
}
