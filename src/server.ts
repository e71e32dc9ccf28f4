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
import { PackReloader, setPackGauges, type ReloadReport } from './reload.js';
import { RunMonitor } from './monitor/monitor.js';
import { openRunsDatabase } from './monitor/open.js';
import { ReaderClient } from './reader/client.js';
import { Service } from './service.js';
import { grpcCredentials, loadTls } from './tls.js';
import { buildGrpcServer } from './transports/grpc/server.js';
import { claimSocketPath, releaseSocketPath, socketIdentity } from './transports/grpc/unix.js';
import { buildHttpApp } from './transports/http/app.js';
import { checkPortsFree } from './ports.js';
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

  get packKeys(): string[] {
    return this.pool?.heldPacks ?? [];
  }

  reserve(rows: number): void {
    if (!this.pool) throw new MechRewardError('MR_ERR_NOT_READY', 'engine is still loading');
    this.pool.reserve(rows);
  }

  inputBuffer(byteLength: number): ReturnType<Engine['inputBuffer']> {
    return this.pool?.inputBuffer(byteLength) ?? { id: -1, bytes: new SharedArrayBuffer(byteLength) };
  }

  releaseInput(input: Parameters<Engine['releaseInput']>[0]): void {
    this.pool?.releaseInput(input);
  }

  run(...args: Parameters<Engine['run']>): ReturnType<Engine['run']> {
    if (!this.pool) return Promise.reject(new MechRewardError('MR_ERR_NOT_READY', 'engine is still loading'));
    return this.pool.run(...args);
  }
}

export interface RunningServer {
  readonly grpcPort: number;
  /** The Unix socket gRPC also listens on (--grpc-socket), or ''. */
  readonly grpcSocket: string;
  readonly httpPort: number;
  readonly service: Service;
  /** Reads the packs directory again and swaps new, changed and removed packs in (SIGHUP, POST /admin/reload). */
  reload(): Promise<ReloadReport>;
  /** Tests only (--fault-injection): the engine worker exits when its next batch arrives. */
  injectWorkerExit(): void;
  /** Pack versions (name@version) the engine workers hold: the served ones plus any still finishing requests. */
  engineKeys(): string[];
  /** Graceful stop: refuse new work, let in-flight requests finish (up to shutdownGraceMs), then stop. */
  close(): Promise<{ forced: boolean }>;
}

export async function startServer(config: ServeConfig, log: Logger): Promise<RunningServer> {
  assertLittleEndianHost();
  const catalogue = loadPackDirectory(config.packs, { confine: !config.allowPacksOutside });
  if (catalogue.problems.length > 0) {
    const lines = catalogue.problems.map((p) => `  ${p.pack}: ${p.message}`).join('\n');
    throw new MechRewardError('MR_ERR_PACK_INVALID', `${catalogue.problems.length} pack(s) in ${config.packs} failed to load:\n${lines}`);
  }
  if (catalogue.packs.size === 0) throw new MechRewardError('MR_ERR_CONFIG_INVALID', `no packs found in ${config.packs} (a pack is a folder with pack.json and sae/)`);
  if (catalogue.packs.size > config.maxPacks) {
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `${config.packs} holds ${catalogue.packs.size} packs, more than max_packs ${config.maxPacks}; raise --max-packs or move some out`);
  }
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
  for (const pack of catalogue.packs.values()) setPackGauges(metrics, pack);
  const engine = new EngineHandle();
  const admission = new Admission(config.maxInflight);
  const runsDb = await openRunsDatabase(config.runsDb, { moveAside: config.runsDbMoveAside, log: (msg, detail) => log.warn(detail, msg) });
  log.info({ runsDb: runsDb.location, kind: runsDb.kind }, 'runs database open');
  const monitor = new RunMonitor(runsDb, catalogue.packs, { maxRuns: config.maxRuns, flushMs: config.runsFlushMs, onEvicted: (n) => metrics.runsEvicted.inc(n) });
  const limits = { maxTokensPerRequest: config.maxTokensPerRequest, maxSequencesPerRequest: config.maxSequencesPerRequest, maxBatchTokens: config.maxBatchTokens };
  const scorer = new Scorer(catalogue.packs, engine, admission, limits, monitor);
  const reloader = new PackReloader({ config, scorer, monitor, metrics, log, engine: () => engine.pool });
  const reader = config.readerUrl ? new ReaderClient(config.readerUrl, config.readerTimeoutMs) : undefined;
  const service = new Service(config, scorer, admission, monitor, metrics, log, engine, ortVersion, () => reloader.reload(), reader);

  // Bind first, load second: while large SAEs load, /healthz answers, /readyz says 503 with a reason, gRPC
  // health says NOT_SERVING and Score says UNAVAILABLE, so orchestrators can tell "starting" from "dead".
  const grpcServer = buildGrpcServer(service);
  const tls = loadTls(config);
  const http = buildHttpApp(service, tls);
  let socketId: string | undefined;
  const stopTransports = async (): Promise<void> => {
    grpcServer.server.forceShutdown();
    await http.close();
    if (config.grpcSocket) releaseSocketPath(config.grpcSocket, socketId);
  };
  let grpcPort: number;
  let httpPort: number;
  try {
    await checkPortsFree(config.host, [
      { port: config.grpcPort, flag: '--grpc-port', env: 'MECHREWARD_GRPC_PORT' },
      { port: config.httpPort, flag: '--http-port', env: 'MECHREWARD_HTTP_PORT' },
    ]);
    grpcPort = await new Promise<number>((resolve, reject) =>
      grpcServer.server.bindAsync(`${config.host}:${config.grpcPort}`, grpcCredentials(tls), (err, port) => (err ? reject(err) : resolve(port))),
    );
    if (config.grpcSocket) {
      await claimSocketPath(config.grpcSocket);
      await new Promise<void>((resolve, reject) => grpcServer.server.bindAsync(`unix:${config.grpcSocket}`, grpcCredentials(tls), (err) => (err ? reject(err) : resolve())));
      socketId = socketIdentity(config.grpcSocket);
    }
    await http.listen({ host: config.host, port: config.httpPort });
    const address = http.server.address();
    httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
  } catch (err) {
    await stopTransports();
    await monitor.close();
    if (err instanceof MechRewardError) throw err;
    throw new MechRewardError('MR_ERR_CONFIG_INVALID', `cannot bind ${config.host}${config.grpcSocket ? ` or ${config.grpcSocket}` : ''}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  grpcServer.setServing(false);
  // Readiness can change after start (a worker dies and is replaced, shutdown): mirror it into gRPC health.
  let lastServing: boolean | undefined;
  function syncHealth(): void {
    const serving = service.isReady();
    if (serving !== lastServing) {
      grpcServer.setServing(serving);
      lastServing = serving;
    }
  }
  log.info({ host: config.host, grpcPort, grpcSocket: config.grpcSocket || undefined, httpPort, tls: tls ? (tls.clientCa ? 'mutual' : 'server') : 'off' }, 'listening; loading engine');

  try {
    engine.pool = await EnginePool.start(planEngine(catalogue.packs.values()), {
      workers: config.workers,
      settings: { executionProvider: config.executionProvider, intraOpThreads: config.intraOpThreads, allowSpinning: config.allowSpinning, cpuMemArena: config.cpuMemArena },
      batching: { maxBatchTokens: config.maxBatchTokens, maxQueueTokens: config.maxQueueTokens, maxQueueDelayMs: config.maxQueueDelayMs },
      onWorkerEvent: (event, detail) => {
        if (event === 'worker_exit') {
          metrics.workerRestarts.inc();
          log.error(detail, 'engine worker exited unexpectedly; replacing it (not ready until it is warm)');
        } else {
          log.info(detail, event);
        }
        // Readiness follows worker deaths and recoveries at once, not at the next poll.
        syncHealth();
      },
      onBatch: (rows, jobs) => {
        metrics.batchTokens.observe(rows);
        metrics.batchJobs.observe(jobs);
        metrics.executions.inc();
      },
      onDrop: (rows) => metrics.rowsDropped.inc(rows),
      faultInjection: config.faultInjection,
    });
  } catch (err) {
    await stopTransports();
    await monitor.close();
    throw err;
  }

  syncHealth();
  const healthTimer = setInterval(syncHealth, 250);
  healthTimer.unref();
  log.info({ host: config.host, grpcPort, grpcSocket: config.grpcSocket || undefined, httpPort, workers: config.workers, intraOpThreads: config.intraOpThreads }, 'mechreward ready');

  return {
    grpcPort,
    grpcSocket: config.grpcSocket,
    httpPort,
    service,
    reload: () => reloader.reload(),
    engineKeys: () => engine.packKeys,
    injectWorkerExit: () => {
      if (!config.faultInjection) throw new MechRewardError('MR_ERR_CONFIG_INVALID', 'fault injection needs --fault-injection (tests only)');
      engine.pool?.armWorkerExit();
    },
    async close() {
      // Readiness flips first, so load balancers stop sending work; new calls get UNAVAILABLE / 503 while
      // both transports stop accepting and in-flight requests run to completion.
      service.startDraining();
      syncHealth();
      grpcServer.endWatches();
      clearInterval(healthTimer);
      const grpcDrained = new Promise<void>((resolve) => grpcServer.server.tryShutdown(() => resolve()));
      const httpDrained = http.close();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), config.shutdownGraceMs)));
      const forced = await Promise.race([Promise.all([grpcDrained, httpDrained]).then(() => false), timeout]);
      clearTimeout(timer);
      if (forced) {
        // Past the grace period: queued work is refused with UNAVAILABLE (the pool lets a running engine batch
        // finish, one chunk), the replies go out, then both transports drop what is left.
        await engine.pool?.close();
        await Promise.race([grpcDrained, new Promise((resolve) => setTimeout(resolve, Math.min(1000, config.shutdownGraceMs)))]);
        grpcServer.server.forceShutdown();
        http.server.closeAllConnections();
      }
      await httpDrained;
      await engine.pool?.close();
      service.shm.close();
      if (config.grpcSocket) releaseSocketPath(config.grpcSocket, socketId);
      await monitor.close();
      return { forced };
    },
  };
}
