// The engine as the rest of the server sees it: a pool of worker threads, each holding every session, fed from
// one FIFO queue. Jobs whose caller has gone (aborted signal) are dropped when they leave the queue, before any
// onnxruntime work. A worker that dies fails its in-flight job and is replaced; readiness drops until the
// replacement has warmed up.
import { Worker } from 'node:worker_threads';

import { MechRewardError } from '../errors.js';
import type { EnginePlan } from './plan.js';
import type { FromWorker, InitMessage, SessionSettings } from './protocol.js';

export interface EngineRunResult {
  readonly reward: Float32Array;
  readonly acts: Float32Array | undefined;
  readonly inferenceMs: number;
  readonly queueMs: number;
}

interface Job {
  readonly id: number;
  readonly pack: string;
  readonly rows: Float32Array;
  readonly numRows: number;
  readonly fetchActs: boolean;
  readonly signal: AbortSignal | undefined;
  readonly enqueuedAt: number;
  readonly resolve: (r: EngineRunResult) => void;
  readonly reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  current: Job | undefined;
  startedAt: number;
}

export interface EnginePoolOptions {
  readonly workers: number;
  readonly settings: SessionSettings;
  readonly onWorkerEvent?: (event: string, detail: Record<string, unknown>) => void;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

export class EnginePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextJobId = 1;
  private closed = false;
  private readonly init: InitMessage;

  private constructor(
    plan: EnginePlan,
    private readonly options: EnginePoolOptions,
  ) {
    this.init = { type: 'init', settings: options.settings, models: plan.models, packs: plan.packs };
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

  run(pack: string, rows: Float32Array, numRows: number, fetchActs: boolean, signal?: AbortSignal): Promise<EngineRunResult> {
    if (this.closed) return Promise.reject(new MechRewardError('MR_ERR_NOT_READY', 'engine is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextJobId++, pack, rows, numRows, fetchActs, signal, enqueuedAt: performance.now(), resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new MechRewardError('MR_ERR_NOT_READY', 'engine is shutting down'));
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }

  private spawn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const slot: Slot = { worker: new Worker(WORKER_URL), ready: false, current: undefined, startedAt: 0 };
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
      slot.current.reject(new MechRewardError('MR_ERR_BACKEND', 'engine worker exited while scoring'));
      slot.current = undefined;
    }
    if (this.closed || !slot.ready) return;
    // An unexpected exit after a successful start: replace the worker; queued jobs wait for it.
    this.options.onWorkerEvent?.('worker_exit', { code });
    this.spawn().catch((err: unknown) => this.options.onWorkerEvent?.('worker_respawn_failed', { message: String(err) }));
  }

  private finish(slot: Slot, msg: Extract<FromWorker, { jobId: number }>): void {
    const job = slot.current;
    slot.current = undefined;
    if (job && job.id === msg.jobId) {
      if (msg.type === 'result') {
        job.resolve({ reward: msg.reward, acts: msg.acts, inferenceMs: msg.inferenceMs, queueMs: slot.startedAt - job.enqueuedAt });
      } else {
        job.reject(new MechRewardError('MR_ERR_BACKEND', 'engine run failed', new Error(msg.message)));
      }
    }
    this.dispatch();
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (!slot.ready || slot.current) continue;
      let job = this.queue.shift();
      // A caller that cancelled or passed its deadline while queued costs no engine time.
      while (job?.signal?.aborted) {
        job.reject(new MechRewardError('MR_ERR_CANCELLED', 'request was cancelled before scoring started'));
        job = this.queue.shift();
      }
      if (!job) return;
      slot.current = job;
      slot.startedAt = performance.now();
      slot.worker.postMessage(
        { type: 'run', jobId: job.id, pack: job.pack, rows: job.rows, numRows: job.numRows, fetchActs: job.fetchActs },
        [job.rows.buffer as ArrayBuffer],
      );
    }
  }
}
