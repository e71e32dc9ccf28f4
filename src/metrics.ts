// Every metric mechreward exports. Names and labels are API (like proto fields): renaming one breaks
// dashboards. Labels are bounded: method, code, reason, pack (the fixed set loaded at start-up), canary.
import client from 'prom-client';

const LATENCY_BUCKETS = client.exponentialBuckets(0.0005, 2, 16); // 0.5 ms … ≈16 s
const SIZE_BUCKETS = client.exponentialBuckets(1, 2, 16); // 1 … 32768

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics(info: { version: string; ortVersion: string }) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const m = {
    registry,
    requests: new client.Counter({ name: 'mechreward_requests_total', help: 'Requests finished, by method and status code', labelNames: ['method', 'code'], registers: [registry] }),
    failures: new client.Counter({ name: 'mechreward_request_failures_total', help: 'Failed requests by reason', labelNames: ['reason'], registers: [registry] }),
    requestDuration: new client.Histogram({ name: 'mechreward_request_duration_seconds', help: 'Request latency from receipt to reply', labelNames: ['method'], buckets: LATENCY_BUCKETS, registers: [registry] }),
    queueDuration: new client.Histogram({ name: 'mechreward_queue_duration_seconds', help: 'Time a request waited for an engine worker', buckets: LATENCY_BUCKETS, registers: [registry] }),
    inferenceDuration: new client.Histogram({ name: 'mechreward_inference_duration_seconds', help: 'Engine time per request (sum over its chunks)', buckets: LATENCY_BUCKETS, registers: [registry] }),
    requestTokens: new client.Histogram({ name: 'mechreward_request_tokens', help: 'Response tokens scored per request', buckets: SIZE_BUCKETS, registers: [registry] }),
    tokensScored: new client.Counter({ name: 'mechreward_tokens_scored_total', help: 'Response tokens scored, by pack', labelNames: ['pack'], registers: [registry] }),
    canaryFlags: new client.Counter({ name: 'mechreward_canary_flags_total', help: 'Canary flags raised, by pack and canary', labelNames: ['pack', 'canary'], registers: [registry] }),
    nonfinite: new client.Counter({ name: 'mechreward_nonfinite_values_total', help: 'Requests rejected for NaN/Inf', labelNames: ['where'], registers: [registry] }),
    batchTokens: new client.Histogram({ name: 'mechreward_batch_tokens', help: 'Token rows per engine run (after dynamic batching)', buckets: SIZE_BUCKETS, registers: [registry] }),
    batchJobs: new client.Histogram({ name: 'mechreward_batch_size', help: 'Queued jobs (request chunks) merged into one engine run', buckets: SIZE_BUCKETS, registers: [registry] }),
    executions: new client.Counter({ name: 'mechreward_executions_total', help: 'Engine runs (mechreward_requests_total{method="Score"} / this = mean requests per run)', registers: [registry] }),
    queueSize: new client.Gauge({ name: 'mechreward_queue_size', help: 'Engine jobs waiting for a worker', registers: [registry] }),
    inflight: new client.Gauge({ name: 'mechreward_inflight_requests', help: 'Score requests admitted and not finished', registers: [registry] }),
    packReady: new client.Gauge({ name: 'mechreward_pack_ready', help: '1 when the pack is loaded and warm', labelNames: ['pack'], registers: [registry] }),
    packValidationRho: new client.Gauge({ name: 'mechreward_pack_validation_rho', help: "Held-out Spearman rho from the pack's validation block (stage gate 1)", labelNames: ['pack'], registers: [registry] }),
    packValidationN: new client.Gauge({ name: 'mechreward_pack_validation_n', help: "Held-out responses behind the pack's validation rho", labelNames: ['pack'], registers: [registry] }),
    packValidated: new client.Gauge({ name: 'mechreward_pack_validated', help: '1 when the pack passes stage gate 1 as serve enforces it, 0 when served with --allow-unvalidated', labelNames: ['pack'], registers: [registry] }),
    verifierDisagreement: new client.Histogram({ name: 'mechreward_verifier_disagreement', help: "Dual verifier: per response, the share of rewarded tokens whose sign the pack's probe contradicts", labelNames: ['pack'], buckets: [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1], registers: [registry] }),
    verifierDownweighted: new client.Counter({ name: 'mechreward_verifier_downweighted_total', help: "Dual verifier: responses whose rewards batch_downweight scaled", labelNames: ['pack'], registers: [registry] }),
    runs: new client.Gauge({ name: 'mechreward_runs', help: 'Training runs the canary monitor has seen (persisted)', registers: [registry] }),
    runAlarms: new client.Gauge({ name: 'mechreward_run_alarms', help: "Runs whose flag-rate lower bound exceeds their pack's baseline upper bound (see GET /v1/runs)", registers: [registry] }),
    runsEvicted: new client.Counter({ name: 'mechreward_runs_evicted_total', help: 'Runs the monitor evicted (oldest idle first) to stay within --max-runs', registers: [registry] }),
    runsStoreBytes: new client.Gauge({ name: 'mechreward_runs_store_bytes', help: "Bytes the runs database's tables take (SQLite file + WAL, or PostgreSQL relation sizes)", registers: [registry] }),
    rowsDropped: new client.Counter({ name: 'mechreward_dropped_rows_total', help: 'Token rows taken off the engine queue unrun: their caller cancelled or passed its deadline, or another chunk of their request failed', registers: [registry] }),
    workerRestarts: new client.Counter({ name: 'mechreward_worker_restarts_total', help: 'Engine workers that exited unexpectedly and were replaced', registers: [registry] }),
    reloads: new client.Counter({ name: 'mechreward_pack_reloads_total', help: 'Pack directory reloads (SIGHUP or POST /admin/reload) by outcome: ok, rejected (some packs refused), failed', labelNames: ['outcome'], registers: [registry] }),
    reloadRejections: new client.Counter({ name: 'mechreward_pack_reload_rejections_total', help: 'Packs a reload refused (broken, not validated, over max_packs), by pack', labelNames: ['pack'], registers: [registry] }),
    buildInfo: new client.Gauge({ name: 'mechreward_build_info', help: 'Build information (always 1)', labelNames: ['version', 'ort_version'], registers: [registry] }),
  };
  m.buildInfo.set({ version: info.version, ort_version: info.ortVersion }, 1);
  for (const outcome of ['ok', 'rejected', 'failed']) m.reloads.inc({ outcome }, 0);
  for (const where of ['input', 'output']) m.nonfinite.inc({ where }, 0);
  for (const reason of ['overloaded', 'not_ready', 'timeout', 'cancelled', 'validation', 'not_found', 'internal', 'reader']) m.failures.inc({ reason }, 0);
  return m;
}
