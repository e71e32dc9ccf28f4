// The engine as the rest of the server sees it: a pool of worker threads, each holding every session, fed from
// one FIFO queue with dynamic batching. When a worker is free it takes the oldest job and every other queued
// job of the same pack that fits in max_batch_tokens rows, runs them as one [N, d_model] batch (token rows from
// different requests and sequences, concatenated) and splits the outputs back. The queue is bounded in rows
// (max_queue_tokens): a caller that would overflow it is refused at once. Jobs whose caller has gone (aborted
// signal) are dropped when they leave the queue, before any onnxruntime work. A worker that dies fails its
// in-flight jobs and is replaced; readiness drops until the replacement has warmed up.
//
// Packs are known by their engine key (name@version). A hot reload loads the new keys into every worker
// first (load()), the caller then switches to them, and retire() drops old keys once no queued or running job
// refers to them: requests that started on an old version finish on it.
import { Worker } from 'node:worker_threads';

import { MechRewardError } from '../errors.js';
import { SlabPool, type Slab } from './buffers.js';
import type { EnginePlan } from './plan.js';
import type { FaultMessage, FromWorker, InitMessage, LoadMessage, ModelPlan, NonFiniteHit, PackPlan, ReconOutputs, RetireMessage, RowInput, RunMessage, SessionSettings } from './protocol.js';

export interface EngineRunResult {
  readonly reward: Float32Array;
  readonly acts: Float32Array | undefined;
  readonly recon: ReconOutputs | undefined;
  /** Per token: the dual verifier's logit, when the pack has one. */
  readonly verifier: Float32Array | undefined;
  readonly inferenceMs: number;
  readonly queueMs: number;
}

interface Job {
  readonly id: number;
  readonly pack: string;
  readonly input: RowInput;
  readonly numRows: number;
  readonly fetchActs: boolean;
  readonly signal: AbortSignal | undefined;
  readonly enqueuedAt: number;
  readonly resolve: (r: EngineRunResult) => void;
  readonly reject: (e: unknown) => void;
}

interface Batch {
  readonly id: number;
  readonly jobs: Job[];
  readonly rows: number;
  readonly startedAt: number;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  current: Batch | undefined;
  /** Input slabs this worker already holds (buffers.ts). */
  readonly slabs: Set<number>;
  /** Hot reloads this worker is building, by load id. */
  readonly loads: Map<number, { resolve: () => void; reject: (e: unknown) => void }>;
  /** Called when the current batch finishes or the worker exits (close() waits for it). */
  onIdle?: () => void;
}

export interface BatchingOptions {
  /** Most token rows in one engine run (also bounds onnxruntime's arena: rows x d_sae x 4 bytes). */
  readonly maxBatchTokens: number;
  /** Most token rows waiting in the queue; more are refused with MR_ERR_OVERLOADED. */
  readonly maxQueueTokens: number;
  /** How long a free worker may wait for a fuller batch (0 = run what is there, as Triton's default). */
  readonly maxQueueDelayMs: number;
}

export interface EnginePoolOptions {
  readonly workers: number;
  readonly settings: SessionSettings;
  readonly batching: BatchingOptions;
  readonly onWorkerEvent?: (event: string, detail: Record<string, unknown>) => void;
  /** Called for every engine run: rows in it and how many jobs were merged into it. */
  readonly onBatch?: (rows: number, jobs: number) => void;
  /** Called when queued rows are dropped because their caller went away (cancelled, deadline passed). */
  readonly onDrop?: (rows: number) => void;
  /** Tests only: honour armWorkerExit(). */
  readonly faultInjection?: boolean;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);
/** Input slabs kept for reuse between requests and cached by the workers (see buffers.ts). */
const CACHED_SLAB_BYTES = 256 * 1024 * 1024;

/** A job's input failed the worker's finiteness check; the scorer names the sequence and token. */
export class NonFiniteInputError extends MechRewardError {
  constructor(readonly hit: NonFiniteHit) {
    super('MR_ERR_NONFINITE_INPUT', `sequences[${hit.seq}].activations: ${Number.isNaN(hit.value) ? 'NaN' : String(hit.value)} at token ${hit.token}, dim ${hit.dim}; activations must be finite`);
  }
}

/** Float32 rows (already widened) as an engine input: one F32 part, fed whole. */
export function floatRowInput(rows: Float32Array, numRows: number): RowInput {
  const whole = rows.byteOffset === 0 && rows.byteLength === rows.buffer.byteLength ? (rows.buffer as ArrayBuffer) : rows.slice().buffer;
  return { slab: -1, bytes: whole, numRows, parts: [{ dtype: 'F32', byteOffset: 0, rows: numRows, feed: true, seq: 0, firstToken: 0 }] };
}

export class EnginePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextJobId = 1;
  private nextBatchId = 1;
  private queuedRows = 0;
  private delayTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private nextLoadId = 1;
  /** Every model and pack the workers hold (a respawned worker gets all of them). */
  private readonly models = new Map<string, ModelPlan>();
  private readonly packs = new Map<string, PackPlan>();
  /** Queued or running jobs per pack key, and keys waiting for theirs to reach 0 before they are dropped. */
  private readonly pending = new Map<string, number>();
  private readonly retiring = new Set<string>();
  private readonly slabs = new SlabPool(CACHED_SLAB_BYTES);
  /** Slabs handed out by inputBuffer(), by id, until their job is over. */
  private readonly lent = new Map<number, Slab>();

  private constructor(
    plan: EnginePlan,
    private readonly options: EnginePoolOptions,
  ) {
    for (const m of plan.models) this.models.set(m.id, m);
    for (const p of plan.packs) this.packs.set(p.pack, p);
  }

  private get init(): InitMessage {
    return { type: 'init', settings: this.options.settings, models: [...this.models.values()], packs: [...this.packs.values()], faultInjection: this.options.faultInjection ?? false };
  }

  /** Starts every worker and resolves once each has built its sessions and run its warm-up. */
  static async start(plan: EnginePlan, options: EnginePoolOptions): Promise<EnginePool> {
    const pool = new EnginePool(plan, options);
    try {
      await Promise.all(Array.from({ length: options.workers }, () => pool.spawn()));
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  /** True while every worker is warm. */
  get ready(): boolean {
    return !this.closed && this.slots.length === this.options.workers && this.slots.every((s) => s.ready);
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  /** Throws MR_ERR_OVERLOADED unless `rows` more token rows fit in the queue. Check before enqueueing a request. */
  reserve(rows: number): void {
    const max = this.options.batching.maxQueueTokens;
    if (this.queuedRows + rows > max) {
      throw new MechRewardError('MR_ERR_OVERLOADED', `engine queue is full (${this.queuedRows} of ${max} token rows waiting; this request needs ${rows}); retry with backoff`);
    }
  }

  /** A shared slab of at least `byteLength` bytes for a RowInput (reused; contents arbitrary). */
  inputBuffer(byteLength: number): Slab {
    const slab = this.slabs.take(byteLength);
    if (slab.id >= 0) this.lent.set(slab.id, slab);
    return slab;
  }

  /** Hands back the slab of an input that will not be run (its request failed before or while queueing). */
  releaseInput(input: Pick<RowInput, 'slab'>): void {
    const slab = this.lent.get(input.slab);
    if (!slab) return;
    this.lent.delete(input.slab);
    this.slabs.give(slab);
  }

  /** The job no longer needs its input: its slab can serve another request. */
  private release(job: Job): void {
    this.releaseInput(job.input);
  }

  /**
   * Queues `input` (its slab from inputBuffer() must not be written again by the caller). Rejects
   * with NonFiniteInputError when the worker finds NaN/Inf in any of its rows, prompt rows included.
   */
  run(pack: string, input: RowInput, fetchActs: boolean, signal?: AbortSignal): Promise<EngineRunResult> {
    const numRows = input.numRows;
    if (this.closed || !this.packs.has(pack)) {
      this.releaseInput(input);
      if (this.closed) return Promise.reject(new MechRewardError('MR_ERR_NOT_READY', 'engine is shutting down'));
      return Promise.reject(new MechRewardError('MR_ERR_INTERNAL', `engine does not hold pack ${pack}`));
    }
    this.pending.set(pack, (this.pending.get(pack) ?? 0) + 1);
    const settled = (): void => {
      const left = (this.pending.get(pack) ?? 1) - 1;
      if (left > 0) this.pending.set(pack, left);
      else this.pending.delete(pack);
      this.retireIdle();
    };
    return new Promise<EngineRunResult>((resolve, reject) => {
      const job: Job = { id: this.nextJobId++, pack, input, numRows, fetchActs, signal, enqueuedAt: performance.now(), resolve, reject };
      this.queue.push(job);
      this.queuedRows += numRows;
      // A caller that goes away frees its queue space at once; its running chunk (if any) completes.
      signal?.addEventListener('abort', () => this.dropQueued(job), { once: true });
      this.dispatch();
    }).finally(settled);
  }

  /**
   * Tests only (--fault-injection): the first worker exits when its next batch arrives, as a crashed worker
   * would, without aborting the process.
   */
  armWorkerExit(): void {
    if (!this.options.faultInjection) throw new MechRewardError('MR_ERR_INTERNAL', 'fault injection is off');
    this.slots[0]?.worker.postMessage({ type: 'fault', fault: 'exit_before_next_run' } satisfies FaultMessage);
  }

  /**
   * Hot reload, step 1: every worker builds and warms up the models and packs of `plan` it does not hold.
   * Nothing is served from them until the caller switches to their keys. On failure nothing new is kept.
   */
  async load(plan: EnginePlan): Promise<void> {
    if (this.closed) throw new MechRewardError('MR_ERR_NOT_READY', 'engine is shutting down');
    if (!this.ready) throw new MechRewardError('MR_ERR_NOT_READY', 'an engine worker is restarting; retry the reload');
    const models = plan.models.filter((m) => !this.models.has(m.id));
    const packs = plan.packs.filter((p) => !this.packs.has(p.pack));
    if (packs.length === 0 && models.length === 0) return;
    const loadId = this.nextLoadId++;
    const results = await Promise.allSettled(
      this.slots.map(
        (slot) =>
          new Promise<void>((resolve, reject) => {
            slot.loads.set(loadId, { resolve, reject });
            slot.worker.postMessage({ type: 'load', loadId, models, packs } satisfies LoadMessage);
          }),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // Workers that did build the new packs drop them again.
      for (const slot of this.slots) slot.worker.postMessage({ type: 'retire', packs: packs.map((p) => p.pack) } satisfies RetireMessage);
      throw failed.reason;
    }
    for (const m of models) this.models.set(m.id, m);
    for (const p of packs) this.packs.set(p.pack, p);
  }

  /** Hot reload, step 2: drop these pack keys once no queued or running job refers to them. */
  retire(keys: Iterable<string>): void {
    for (const key of keys) if (this.packs.has(key)) this.retiring.add(key);
    this.retireIdle();
  }

  /** Pack keys the workers hold (for tests and logs). */
  get heldPacks(): string[] {
    return [...this.packs.keys()];
  }

  private retireIdle(): void {
    const idle = [...this.retiring].filter((key) => !this.pending.has(key));
    if (idle.length === 0) return;
    for (const key of idle) {
      this.retiring.delete(key);
      this.packs.delete(key);
    }
    const used = new Set([...this.packs.values()].map((p) => p.modelId));
    for (const id of [...this.models.keys()]) if (!used.has(id)) this.models.delete(id);
    for (const slot of this.slots) slot.worker.postMessage({ type: 'retire', packs: idle } satisfies RetireMessage);
  }

  /**
   * Refuses queued work with UNAVAILABLE, lets each running batch finish (one engine run, at most
   * max_batch_tokens rows: terminating a worker inside onnxruntime's run() would abort the process), then
   * stops the workers.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.delayTimer) clearTimeout(this.delayTimer);
    this.queuedRows = 0;
    for (const job of this.queue.splice(0)) job.reject(new MechRewardError('MR_ERR_NOT_READY', 'server is shutting down; this request was still queued, retry on another replica or after restart'));
    await Promise.all(this.slots.filter((s) => s.current).map((s) => new Promise<void>((resolve) => (s.onIdle = resolve))));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }

  private dropQueued(job: Job): void {
    const i = this.queue.indexOf(job);
    if (i < 0) return; // already running or finished
    this.queue.splice(i, 1);
    this.queuedRows -= job.numRows;
    this.release(job);
    this.options.onDrop?.(job.numRows);
    job.reject(new MechRewardError('MR_ERR_CANCELLED', 'request was cancelled before scoring started'));
  }

  private spawn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const slot: Slot = { worker: new Worker(WORKER_URL), ready: false, current: undefined, slabs: new Set(), loads: new Map() };
      this.slots.push(slot);
      let settled = false;
      slot.worker.on('message', (msg: FromWorker) => {
        if (msg.type === 'ready') {
          slot.ready = true;
          this.options.onWorkerEvent?.('worker_ready', { warmupMs: msg.warmupMs });
          if (!settled) (settled = true), resolve();
          this.dispatch();
        } else if (msg.type === 'init_error') {
          if (!settled) (settled = true), reject(new MechRewardError('MR_ERR_PACK_INVALID', msg.message));
          void slot.worker.terminate();
        } else if (msg.type === 'loaded' || msg.type === 'load_error') {
          const load = slot.loads.get(msg.loadId);
          slot.loads.delete(msg.loadId);
          if (msg.type === 'loaded') load?.resolve();
          else load?.reject(new MechRewardError('MR_ERR_PACK_INVALID', `engine could not build the pack: ${msg.message}`));
        } else {
          this.finish(slot, msg);
        }
      });
      slot.worker.on('error', (err) => {
        if (!settled) (settled = true), reject(new MechRewardError('MR_ERR_BACKEND', `engine worker failed to start: ${err.message}`, err));
        this.options.onWorkerEvent?.('worker_error', { message: err.message });
      });
      slot.worker.on('exit', (code) => this.onExit(slot, code));
      slot.worker.postMessage(this.init);
    });
  }

  private onExit(slot: Slot, code: number): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    if (slot.current) {
      // Scoring is a pure function: the caller can safely retry once the replacement worker is warm.
      for (const job of slot.current.jobs) this.release(job);
      for (const job of slot.current.jobs) job.reject(new MechRewardError('MR_ERR_WORKER_LOST', `engine worker exited (code ${code}) while scoring this request; a replacement is starting, retry`));
      slot.current = undefined;
    }
    slot.onIdle?.();
    for (const load of slot.loads.values()) load.reject(new MechRewardError('MR_ERR_NOT_READY', `engine worker exited (code ${code}) during the reload; retry it`));
    slot.loads.clear();
    if (this.closed || !slot.ready) return;
    // An unexpected exit after a successful start: replace the worker; queued jobs wait for it.
    this.options.onWorkerEvent?.('worker_exit', { code });
    this.spawn().catch((err: unknown) => this.options.onWorkerEvent?.('worker_respawn_failed', { message: String(err) }));
  }

  private finish(slot: Slot, msg: Extract<FromWorker, { jobId: number }>): void {
    const batch = slot.current;
    slot.current = undefined;
    slot.onIdle?.();
    if (batch) for (const job of batch.jobs) this.release(job);
    if (batch && batch.id === msg.jobId) {
      if (msg.type === 'result') {
        // Split the batch's outputs back into its jobs, in the order they were concatenated.
        const columns = msg.acts ? msg.acts.length / batch.rows : 0;
        let row = 0;
        for (const [i, job] of batch.jobs.entries()) {
          const hit = msg.nonFinite[i];
          if (hit) {
            job.reject(new NonFiniteInputError(hit));
            row += job.numRows;
            continue;
          }
          const own = (a: Float32Array, width = 1) => (batch.jobs.length === 1 ? a : a.slice(row * width, (row + job.numRows) * width));
          const recon = msg.recon && { err: own(msg.recon.err), energy: own(msg.recon.energy) };
          job.resolve({ reward: own(msg.reward), acts: msg.acts && own(msg.acts, columns), recon, verifier: msg.verifier && own(msg.verifier), inferenceMs: msg.inferenceMs, queueMs: batch.startedAt - job.enqueuedAt });
          row += job.numRows;
        }
      } else {
        const err = new MechRewardError('MR_ERR_BACKEND', 'engine run failed', new Error(msg.message));
        for (const job of batch.jobs) job.reject(err);
      }
    }
    this.dispatch();
  }

  /** Removes a job from the queue's accounting; rejects it if its caller has gone. Returns whether it is live. */
  private dequeued(job: Job): boolean {
    this.queuedRows -= job.numRows;
    if (!job.signal?.aborted) return true;
    // A caller that cancelled or passed its deadline while queued costs no engine time.
    this.release(job);
    this.options.onDrop?.(job.numRows);
    job.reject(new MechRewardError('MR_ERR_CANCELLED', 'request was cancelled before scoring started'));
    return false;
  }

  /** The oldest live job plus every later queued job of the same pack that fits in max_batch_tokens. */
  private takeBatch(): Job[] {
    let first: Job | undefined;
    while ((first = this.queue.shift()) && !this.dequeued(first));
    if (!first) return [];
    const jobs = [first];
    let rows = first.numRows;
    const max = this.options.batching.maxBatchTokens;
    for (let i = 0; i < this.queue.length && rows < max; ) {
      const job = this.queue[i]!;
      if (job.pack === first.pack && rows + job.numRows <= max) {
        this.queue.splice(i, 1);
        if (this.dequeued(job)) {
          jobs.push(job);
          rows += job.numRows;
        }
      } else {
        i++;
      }
    }
    return jobs;
  }

  /** With a queue delay, a free worker waits until the oldest job is that old or a full batch is queued. */
  private shouldWait(): boolean {
    const delay = this.options.batching.maxQueueDelayMs;
    const oldest = this.queue[0];
    if (delay <= 0 || !oldest) return false;
    const waited = performance.now() - oldest.enqueuedAt;
    if (waited >= delay) return false;
    let samePackRows = 0;
    for (const job of this.queue) if (job.pack === oldest.pack) samePackRows += job.numRows;
    if (samePackRows >= this.options.batching.maxBatchTokens) return false;
    if (!this.delayTimer) {
      this.delayTimer = setTimeout(() => {
        this.delayTimer = undefined;
        this.dispatch();
      }, delay - waited);
    }
    return true;
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (!slot.ready || slot.current) continue;
      if (this.shouldWait()) return;
      const jobs = this.takeBatch();
      if (jobs.length === 0) return;
      const rows = jobs.reduce((n, j) => n + j.numRows, 0);
      const inputs = jobs.map((j) => j.input);
      const batch: Batch = { id: this.nextBatchId++, jobs, rows, startedAt: performance.now() };
      slot.current = batch;
      this.options.onBatch?.(rows, jobs.length);
      // The worker concatenates the jobs' rows as it widens them: no merge copy on the main thread. A slab
      // travels with the first job that uses it on this worker only; after that the worker has it.
      const sent = inputs.map((input) => {
        if (input.slab < 0 || !slot.slabs.has(input.slab)) {
          if (input.slab >= 0) slot.slabs.add(input.slab);
          return input;
        }
        return { ...input, bytes: undefined };
      });
      const transfer = sent.flatMap((i) => (i.bytes instanceof ArrayBuffer ? [i.bytes] : []));
      slot.worker.postMessage({ type: 'run', jobId: batch.id, pack: jobs[0]!.pack, inputs: sent, numRows: rows, fetchActs: jobs[0]!.fetchActs } satisfies RunMessage, transfer);
    }
  }
}
