// Composition root: load packs, start the engine, build both transports, bind them, and shut down in order.
// Used by the CLI (`mechreward serve`) and by the tests, which bind port 0.
import * as ort from 'onnxruntime-node';

import type { ServeConfig } from './config.js';
import { Admission } from './core/admission.js';
import { Scorer, type Engine } from './core/scorer.js';
import { planEngine } from './engine/plan.js';
import { EnginePool } from './engine/pool.js';
import { MechRewardError } from './errors.js';
import type { Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { assertLittleEndianHost } from './numerics/widen.js';
import { loadPackDirectory } from './packs/registry.js';
import { validationProblem } from './packs/validation.js';
import { RunMonitor } from './monitor/monitor.js';
import { RunStore } from './monitor/store.js';
import { ReaderClient } from './reader/client.js';
import { Service } from './service.js';
import { grpcCredentials, loadTls } from './tls.js';
import { buildGrpcServer } from './transports/grpc/server.js';
import { buildHttpApp } from './transports/http/app.js';
import { VERSION } from './version.js';

/** The engine as the scorer sees it, before and after the worker pool exists. */
class EngineHandle implements Engine {
  pool: EnginePool | undefined;

  get ready(): boolean {
    return this.pool?.ready ?? false;
  }

  get queueDepth(): number {
    return this.pool?.queueDepth ?? 0;
  }

  reserve(rows: number): void {
    if (!this.pool) throw new MechRewardError('MR_ERR_NOT_READY', 'engine is still loading');
    this.pool.reserve(rows);
  }

  run(...args: Parameters<Engine['run']>): ReturnType<Engine['run']> {
    if (!this.pool) return Promise.reject(new MechRewardError('MR_ERR_NOT_READY', 'engine is still loading'));
    return this.pool.run(...args);
  }
}

export interface RunningServer {
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly service: Service;
  /** Graceful stop: refuse new work, let in-flight requests finish (up to shutdownGraceMs), then stop. */
  close(): Promise<{ forced: boolean }>;
}

export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  assertLittleEndianHost();
  const catalogue = loadPackDirectory(config.packs);
  if (catalogue.problems.length > 0) {
    const lines = catalogue.problems.map((p) => `  ${p.pack}: ${p.message}`).join('\n');
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${catalogue.problems.length} pack(s) in ${config.packs} failed to load:\n${lines}`);
  }
  if (catalogue.packs.size === 0) throw new MechRewardError('MR_ERR_CONFIG_INVALID', `no packs found in ${config.packs} (a pack is a folder with pack.json and sae/)`);
  const unvalidated = [...catalogue.packs.values()].flatMap((pack) => {
    const problem = validationProblem(pack);
    return problem ? [{ pack: pack.name, problem }] : [];
  });
  if (unvalidated.length > 0 && !config.allowUnvalidated) {
    const lines = unvalidated.map((u) => `  ${u.pack}: ${u.problem}`).join('\n');
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${unvalidated.length} pack(s) have not passed stage gate 1 (start with --allow-unvalidated to serve them anyway):\n${lines}`);
  }
  for (const u of unvalidated) log.warn(u, 'serving a pack that has not passed stage gate 1 (--allow-unvalidated)');
  log.info({ packs: [...catalogue.packs.keys()], saes: catalogue.saes.size }, 'packs loaded');

  const ortVersion = ort.env.versions.node ?? 'unknown';
  const metrics = createMetrics({ version: VERSION, ortVersion });
  for (const pack of catalogue.packs.values()) {
    const v = pack.spec.validation;
    if (Number.isFinite(v.spearmanRho)) metrics.packValidationRho.set({ pack: pack.name }, v.spearmanRho);
    metrics.packValidationN.set({ pack: pack.name }, v.n);
    metrics.packValidated.set({ pack: pack.name }, validationProblem(pack) ? 0 : 1);
  }
  const engine = new EngineHandle();
  const admission = new Admission(config.maxInflight);
  const monitor = new RunMonitor(await RunStore.open(config.runsDb || undefined), catalogue.packs);
  const scorer = new Scorer(catalogue.packs, engine, admission, { maxTokensPerRequest: config.maxTokensPerRequest, maxBatchTokens: config.maxBatchTokens }, monitor);
  const reader = config.readerUrl ? new ReaderClient(config.readerUrl, config.readerTimeoutMs) : undefined;
  const service = new Service(config, catalogue.packs, scorer, admission, monitor, metrics, log, engine, ortVersion, reader);

  // Bind first, load second: while large SAEs load, /healthz answers, /readyz says 503 with a reason, gRPC
  // health says NOT_SERVING and Score says UNAVAILABLE, so orchestrators can tell "starting" from "dead".
  const grpcServer = buildGrpcServer(service);
  const tls = loadTls(config);
  const http = buildHttpApp(service, tls);
  const stopTransports = async (): Promise<void> => {
    grpcServer.server.forceShutdown();
    await http.close();
  };
  let grpcPort: number;
  let httpPort: number;
  try {
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.server.bindAsync(`${config.host}:${config.grpcPort}`, grpcCredentials(tls), (err, port) => (err ? reject(err) : resolve(port))),
    );
    await http.listen({ host: config.host, port: config.httpPort });
    const address = http.server.address();
    httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
  } catch (err) {
    await stopTransports();
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `cannot bind ${config.host}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  grpcServer.setServing(false);
  log.info({ host: config.host, grpcPort, httpPort, tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off' }, 'listening; loading engine');

  try {
    engine.pool = await EnginePool.start(planEngine(catalogue.packs.values()), {
      workers: config.workers,
      settings: { executionProvider: config.executionProvider, intraOpThreads: config.intraOpThreads, allowSpinning: config.allowSpinning, cpuMemArena: config.cpuMemArena },
      batching: { maxBatchTokens: config.maxBatchTokens, maxQueueTokens: config.maxQueueTokens, maxQueueDelayMs: config.maxQueueDelayMs },
      onWorkerEvent: (event, detail) => log.info(detail, event),
      onBatch: (rows, jobs) => {
        metrics.batchTokens.observe(rows);
        metrics.batchJobs.observe(jobs);
        metrics.executions.inc();
      },
    });
  } catch (err) {
    await stopTransports();
    monitor.close();
    throw err;
  }

  // Readiness can change after start (a worker dies and is replaced): mirror it into gRPC health.
  let lastServing: boolean | undefined;
  const syncHealth = (): void => {
    const serving = service.isReady();
    if (serving !== lastServing) {
      grpcServer.setServing(serving);
      lastServing = serving;
    }
  };
  syncHealth();
  const healthTimer = setInterval(syncHealth, 250);
  healthTimer.unref();
  log.info({ host: config.host, grpcPort, httpPort, workers: config.workers, intraOpThreads: config.intraOpThreads }, 'mechreward ready');

  return {
    grpcPort,
    httpPort,
    service,
    async close() {
      service.startDraining();
      syncHealth();
      clearInterval(healthTimer);
      const graceful = new Promise<boolean>((resolve) => grpcServer.server.tryShutdown(() => resolve(false)));
      const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(true), config.shutdownGraceMs).unref());
      const forced = await Promise.race([graceful, timeout]);
      if (forced) grpcServer.server.forceShutdown();
      await http.close();
      await engine.pool?.close();
      monitor.close();
      return { forced };
    },
  };
}
