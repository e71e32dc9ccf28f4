// What both transports share: the scorer, the pack catalogue, metrics, readiness and the server's limits.
// Built once by server.ts; transports only translate between their wire format and these calls.
import { TokenCheck } from './auth.js';
import type { ServeConfig } from './config.js';
import type { Admission } from './core/admission.js';
import { describePack, type PackDescription } from './core/describe.js';
import type { ScoreOutput, Scorer } from './core/scorer.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { RunMonitor } from './monitor/monitor.js';
import type { ReaderClient } from './reader/client.js';
import type { Pack } from './packs/registry.js';
import type { ReloadReport } from './reload.js';
import { SharedMemoryRegistry } from './shm/registry.js';
import { VERSION } from './version.js';

export interface ServerInfo {
  version: string;
  onnxruntime_version: string;
  max_message_bytes: number;
  max_tokens_per_request: number;
  max_sequences_per_request: number;
  max_packs: number;
  max_inflight: number;
  max_batch_tokens: number;
  max_queue_tokens: number;
  max_queue_delay_ms: number;
  workers: number;
  intra_op_threads: number;
  packs: string[];
  allow_unvalidated: boolean;
  auth_required: boolean;
}

/** One sequence's result as both transports send it (proto field names; plain arrays). */
export interface WireResult {
  token_rewards: number[];
  reward: number;
  flags: ScoreOutput['results'][number]['flags'];
  verifier_disagreement: number;
  has_verifier: boolean;
  verifier_factor: number;
}

export class Service {
  private draining = false;
  readonly auth: TokenCheck;
  /** Co-located clients' shared-memory regions (docs/shared-memory.md). */
  readonly shm: SharedMemoryRegistry;

  constructor(
    readonly config: ServeConfig,
    readonly scorer: Scorer,
    readonly admission: Admission,
    readonly monitor: RunMonitor,
    readonly metrics: Metrics,
    readonly log: Logger,
    private readonly engine: { readonly ready: boolean; readonly queueDepth: number },
    private readonly ortVersion: string,
    /** Hot reload of the packs directory (POST /admin/reload; SIGHUP calls the same). */
    readonly reloadPacks: () => Promise<ReloadReport>,
    /** The text -> activations reader behind POST /v1/openrlhf/{pack}; undefined without --reader-url. */
    readonly reader: ReaderClient | undefined = undefined,
  ) {
    this.auth = new TokenCheck(config.authToken);
    this.shm = new SharedMemoryRegistry(
      { enabled: config.shm, dir: config.shmDir, leaseMs: config.shmLeaseMs, maxRequestBytes: config.maxMessageBytes },
      { set: (regions, bytes) => (metrics.shmRegions.set(regions), metrics.shmRegisteredBytes.set(bytes)) },
    );
  }

  /** The packs served now (a hot reload swaps the whole map). */
  get packs(): ReadonlyMap<string, Pack> {
    return this.scorer.current;
  }

  /** Ready: every pack loaded and warmed up in every worker, and not shutting down. */
  isReady(): boolean {
    return !this.draining && this.engine.ready;
  }

  notReadyReason(): string {
    return this.draining ? 'shutting down' : 'engine workers are loading or restarting';
  }

  startDraining(): void {
    this.draining = true;
  }

  /** Gauges sampled at scrape time. */
  async refreshGauges(): Promise<void> {
    this.metrics.queueSize.set(this.engine.queueDepth);
    this.metrics.inflight.set(this.admission.current);
    const ready = this.isReady() ? 1 : 0;
    for (const name of this.packs.keys()) this.metrics.packReady.set({ pack: name }, ready);
    const runs = await this.monitor.totals();
    this.metrics.runs.set(runs.runs);
    this.metrics.runAlarms.set(runs.alarms);
    this.metrics.runsStoreBytes.set(runs.storeBytes);
  }

  /** A score's results in the wire shape both transports send (proto field names; plain arrays). */
  static wireResults(out: ScoreOutput): WireResult[] {
    return out.results.map((r) => ({ token_rewards: Array.from(r.tokenRewards), ...Service.wireFields(r) }));
  }

  /** Everything of one result's wire shape but token_rewards (the gRPC transport packs those itself). */
  static wireFields(r: ScoreOutput['results'][number]): Omit<WireResult, 'token_rewards'> {
    return {
      reward: r.reward,
      flags: r.flags,
      verifier_disagreement: r.verifierDisagreement ?? 0,
      has_verifier: r.verifierDisagreement !== undefined,
      verifier_factor: r.verifierFactor,
    };
  }

  /** Metrics of a successful score, the same for every transport. */
  recordScore(out: ScoreOutput): void {
    const m = this.metrics;
    m.tokensScored.inc({ pack: out.pack }, out.tokens);
    m.requestTokens.observe(out.tokens);
    m.queueDuration.observe(out.queueMs / 1000);
    m.inferenceDuration.observe(out.inferenceMs / 1000);
    for (const r of out.results) for (const f of r.flags) m.canaryFlags.inc({ pack: out.pack, canary: f.name });
    for (const r of out.results) {
      if (r.verifierDisagreement !== undefined) m.verifierDisagreement.observe({ pack: out.pack }, r.verifierDisagreement);
      if (r.verifierFactor !== 1) m.verifierDownweighted.inc({ pack: out.pack });
    }
  }

  describePacks(): PackDescription[] {
    return [...this.packs.values()].map(describePack);
  }

  info(): ServerInfo {
    const c = this.config;
    return {
      version: VERSION,
      onnxruntime_version: this.ortVersion,
      max_message_bytes: c.maxMessageBytes,
      max_tokens_per_request: c.maxTokensPerRequest,
      max_sequences_per_request: c.maxSequencesPerRequest,
      max_packs: c.maxPacks,
      max_inflight: c.maxInflight,
      max_batch_tokens: c.maxBatchTokens,
      max_queue_tokens: c.maxQueueTokens,
      max_queue_delay_ms: c.maxQueueDelayMs,
      workers: c.workers,
      intra_op_threads: c.intraOpThreads,
      packs: [...this.packs.keys()],
      allow_unvalidated: c.allowUnvalidated,
      auth_required: this.auth.enabled,
    };
  }
}
