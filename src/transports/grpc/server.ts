// Builds the gRPC server (unbound): RewardService, grpc.health.v1 and nothing else. main/server.ts binds it.
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

import { Service } from '../../service.js';
import { parseStep } from '../../core/step.js';
import type { ScoreRequest__Output } from '../../generated/mechreward/v1/ScoreRequest.js';
import type { ScoreResponse } from '../../generated/mechreward/v1/ScoreResponse.js';
import type { ListPacksResponse } from '../../generated/mechreward/v1/ListPacksResponse.js';
import type { GetInfoResponse } from '../../generated/mechreward/v1/GetInfoResponse.js';
import type { RewardServiceHandlers } from '../../generated/mechreward/v1/RewardService.js';
import type { ListRunsResponse } from '../../generated/mechreward/v1/ListRunsResponse.js';
import type { GetRunRequest__Output } from '../../generated/mechreward/v1/GetRunRequest.js';
import type { RunDetail } from '../../generated/mechreward/v1/RunDetail.js';
import type { RunSummary } from '../../generated/mechreward/v1/RunSummary.js';
import type { RunSummary as RunSummaryJson } from '../../monitor/monitor.js';
import type { RegisterSharedMemoryRequest__Output } from '../../generated/mechreward/v1/RegisterSharedMemoryRequest.js';
import type { RegisterSharedMemoryResponse } from '../../generated/mechreward/v1/RegisterSharedMemoryResponse.js';
import type { UnregisterSharedMemoryRequest__Output } from '../../generated/mechreward/v1/UnregisterSharedMemoryRequest.js';
import { checkClientId, CLIENT_ID_METADATA_KEY } from '../../shm/registry.js';
import { loadContract, SERVICE_NAME } from './contract.js';
import { encodeScoreResponse } from './score-reply.js';
import { unary, type CallContext } from './unary.js';

/** The calling client's id (shared-memory regions are scoped to it). */
function clientId(ctx: CallContext): string {
  const raw = ctx.metadata.get(CLIENT_ID_METADATA_KEY)[0];
  return checkClientId(raw === undefined ? undefined : String(raw));
}

const NO_BYTES = Buffer.alloc(0);

/**
 * Lets go of a Score request's activation bytes once the scorer has copied them into its slabs (it has when
 * score() returns; see Scorer.score). The request object lives until the reply is sent, and with it grpc-js's
 * multi-megabyte message buffer; dropped at once, that buffer dies in the next scavenge instead of surviving
 * into the old generation, which then needs a full mark-compact to free it (docs/benchmarks.md: about 2 ms
 * less server CPU per 2.6 MB request).
 */
function dropActivations(req: ScoreRequest__Output): void {
  for (const s of req.sequences) s.activations = NO_BYTES;
}

/** The monitor's JSON-shaped summary in proto shape (intervals as {lo, hi}). */
function toWireSummary(s: RunSummaryJson): RunSummary {
  return {
    ...s,
    ci: { lo: s.ci[0], hi: s.ci[1] },
    baseline: s.baseline ? { present: true, rate: s.baseline.rate, ci: { lo: s.baseline.ci[0], hi: s.baseline.ci[1] }, flagged: s.baseline.flagged, n: s.baseline.n } : { present: false },
    verifier: s.verifier ? { present: true, ...s.verifier } : { present: false },
  };
}

export interface BuiltGrpcServer {
  readonly server: grpc.Server;
  /** Mirrors readiness into grpc.health.v1 for "" and mechreward.v1.RewardService. */
  setServing(serving: boolean): void;
  /** Shutdown: ends every health Watch stream (after it has seen NOT_SERVING), which would otherwise hold a graceful drain open. */
  endWatches(): void;
}

/** The grpc-js server options (also used by the benchmark's bare echo server, so both run the same grpc-js). */
export function grpcServerOptions(maxMessageBytes: number, maxConnectionAgeMs = 0, graceMs = 0): grpc.ServerOptions {
  return {
    // Behind client-side round-robin a long-lived connection never learns of replicas added later: an age
    // makes clients reconnect (and re-resolve) now and then; calls in flight get the grace to finish.
    ...(maxConnectionAgeMs > 0 ? { 'grpc.max_connection_age_ms': maxConnectionAgeMs, 'grpc.max_connection_age_grace_ms': graceMs } : {}),
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    // A loopback sidecar: ping idle trainers every 60 s rather than gRPC's 2 h default.
    'grpc.keepalive_time_ms': 60_000,
    'grpc.keepalive_timeout_ms': 20_000,
  };
}

export function buildGrpcServer(service: Service): BuiltGrpcServer {
  const contract = loadContract();
  const server = new grpc.Server(grpcServerOptions(service.config.maxMessageBytes, service.config.grpcMaxConnectionAgeMs, service.config.shutdownGraceMs));

  const handlers: RewardServiceHandlers = {
    // Shared-memory descriptors become the bytes they name here, so the scorer sees one kind of sequence.
    // The reply is encoded here, once (score-reply.ts); the Score serializer below passes those bytes through.
    Score: unary<ScoreRequest__Output, Buffer>(service, 'Score', { requiresReady: true }, async (req, ctx) => {
      const sequences = req.sequences.some((s) => s.shm) ? service.shm.resolve(clientId(ctx), req.sequences) : req.sequences;
      const scored = service.scorer.score({ pack: req.pack, sequences, runId: req.run_id, step: parseStep(req.step) }, ctx.signal);
      dropActivations(req);
      const out = await scored;
      ctx.timings = { queueMs: out.queueMs, inferenceMs: out.inferenceMs, tokens: out.tokens };
      service.recordScore(out);
      return encodeScoreResponse({ pack: out.pack, results: out.results.map((r) => ({ token_rewards: r.tokenRewards, ...Service.wireFields(r) })) });
    }) as unknown as RewardServiceHandlers['Score'],
    RegisterSharedMemory: unary<RegisterSharedMemoryRequest__Output, RegisterSharedMemoryResponse>(service, 'RegisterSharedMemory', { requiresReady: false }, async (req, ctx) => {
      service.shm.register(clientId(ctx), req);
      return { lease_ms: service.shm.leaseMs };
    }),
    UnregisterSharedMemory: unary<UnregisterSharedMemoryRequest__Output, object>(service, 'UnregisterSharedMemory', { requiresReady: false }, async (req, ctx) => {
      service.shm.unregister(clientId(ctx), req.name);
      return {};
    }),
    ListPacks: unary<unknown, ListPacksResponse>(service, 'ListPacks', { requiresReady: false }, async () => ({ packs: service.describePacks() })),
    GetInfo: unary<unknown, GetInfoResponse>(service, 'GetInfo', { requiresReady: false }, async () => service.info()),
    ListRuns: unary<unknown, ListRunsResponse>(service, 'ListRuns', { requiresReady: false }, async () => ({ runs: (await service.monitor.list()).map(toWireSummary) })),
    GetRun: unary<GetRunRequest__Output, RunDetail>(service, 'GetRun', { requiresReady: false }, async (req) => {
      const run = await service.monitor.get(req.run_id);
      return { summary: toWireSummary(run), history: run.history, recent_flagged: run.recent_flagged };
    }),
  };
  const definition = contract.mechreward.v1.RewardService.service;
  const score = definition.Score;
  server.addService({ ...definition, Score: { ...score, responseSerialize: (reply: Buffer | ScoreResponse) => (Buffer.isBuffer(reply) ? reply : score.responseSerialize(reply)) } }, handlers);

  const health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
  // Watch streams never end on their own; track them so shutdown can end them (grpc-health-check has no hook).
  const watches = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  const tracking = {
    addService(definition: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) {
      const watch = impl.watch as grpc.handleServerStreamingCall<unknown, unknown>;
      server.addService(definition, {
        ...impl,
        watch: (call: grpc.ServerWritableStream<unknown, unknown>) => {
          watches.add(call);
          call.on('cancelled', () => watches.delete(call));
          watch(call);
        },
      });
    },
  };
  health.addToServer(tracking as unknown as grpc.Server);
  return {
    server,
    endWatches() {
      for (const call of watches) call.end();
      watches.clear();
    },
    setServing(serving) {
      const status = serving ? 'SERVING' : 'NOT_SERVING';
      health.setStatus('', status);
      health.setStatus(SERVICE_NAME, status);
    },
  };
}
