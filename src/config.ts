// The one place options are declared: name, type, default, CLI flag, MECHREWARD_* environment variable and
// the help text. The CLI builds its flags from this table, docs/configuration.md lists it, and nothing else
// reads process.env.
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MechRewardError } from './errors.js';

/** The packs/ folder shipped with the package. */
export const BUNDLED_PACKS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../packs');

export interface ServeConfig {
  packs: string;
  host: string;
  grpcPort: number;
  grpcSocket: string;
  grpcMaxConnectionAgeMs: number;
  httpPort: number;
  workers: number;
  intraOpThreads: number;
  executionProvider: 'cpu' | 'cuda';
  allowSpinning: boolean;
  cpuMemArena: boolean;
  maxInflight: number;
  maxTokensPerRequest: number;
  maxSequencesPerRequest: number;
  maxPacks: number;
  maxBatchTokens: number;
  maxQueueTokens: number;
  maxQueueDelayMs: number;
  maxMessageBytes: number;
  shutdownGraceMs: number;
  logLevel: string;
  allowUnvalidated: boolean;
  runsDb: string;
  runsDbMoveAside: boolean;
  maxRuns: number;
  runsFlushMs: number;
  maxBodyBytes: number;
  httpRequestTimeoutMs: number;
  httpHeadersTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  httpMaxConnections: number;
  allowRemoteWithoutAuth: boolean;
  allowPacksOutside: boolean;
  authToken: string;
  tlsCert: string;
  tlsKey: string;
  tlsClientCa: string;
  readerUrl: string;
  readerTimeoutMs: number;
  faultInjection: boolean;
  shm: boolean;
  shmDir: string;
  shmLeaseMs: number;
}

interface OptionSpec {
  readonly key: keyof ServeConfig;
  readonly flag: string;
  readonly env: string;
  readonly kind: 'string' | 'int' | 'bool';
  readonly help: string;
  readonly defaultValue: () => string | number | boolean;
  readonly choices?: readonly string[];
  /** Never logged or echoed: redactedConfig() masks it. */
  readonly secret?: boolean;
}

export const SERVE_OPTIONS: readonly OptionSpec[] = [
  { key: 'packs', flag: '--packs <dir>', env: 'MECHREWARD_PACKS', kind: 'string', help: 'directory of pack folders (default: the bundled packs/)', defaultValue: () => BUNDLED_PACKS_DIR },
  { key: 'host', flag: '--host <host>', env: 'MECHREWARD_HOST', kind: 'string', help: 'address to bind both ports on; 0.0.0.0 exposes the server beyond this machine', defaultValue: () => '127.0.0.1' },
  { key: 'grpcPort', flag: '--grpc-port <n>', env: 'MECHREWARD_GRPC_PORT', kind: 'int', help: 'gRPC port (0 = pick a free port; the chosen port is logged)', defaultValue: () => 50051 },
  { key: 'grpcSocket', flag: '--grpc-socket <path>', env: 'MECHREWARD_GRPC_SOCKET', kind: 'string', help: "also serve gRPC on this Unix domain socket (clients use the target unix:PATH; same auth and TLS as the port); a stale socket file is replaced, one a live server owns is refused, and it is removed on shutdown ('' = none)", defaultValue: () => '' },
  { key: 'grpcMaxConnectionAgeMs', flag: '--grpc-max-connection-age-ms <n>', env: 'MECHREWARD_GRPC_MAX_CONNECTION_AGE_MS', kind: 'int', help: 'close each gRPC connection (GOAWAY) after this long, letting its calls finish within --shutdown-grace-ms, so clients balancing over several replicas re-resolve and reach new ones (0 = never; a sidecar beside one trainer needs none)', defaultValue: () => 0 },
  { key: 'httpPort', flag: '--http-port <n>', env: 'MECHREWARD_HTTP_PORT', kind: 'int', help: 'HTTP port for /healthz, /readyz, /metrics, /info, /v1/score (0 = pick a free port)', defaultValue: () => 8080 },
  { key: 'workers', flag: '--workers <n>', env: 'MECHREWARD_WORKERS', kind: 'int', help: 'engine worker threads; each holds its own copy of every SAE', defaultValue: () => 1 },
  { key: 'intraOpThreads', flag: '--intra-op-threads <n>', env: 'MECHREWARD_INTRA_OP_THREADS', kind: 'int', help: 'onnxruntime threads per worker (0 = cores / workers); workers x threads may not exceed the cores', defaultValue: () => 0 },
  { key: 'executionProvider', flag: '--execution-provider <name>', env: 'MECHREWARD_EXECUTION_PROVIDER', kind: 'string', help: 'onnxruntime execution provider: cpu, or cuda on a GPU host with the CUDA provider installed', defaultValue: () => 'cpu', choices: ['cpu', 'cuda'] },
  { key: 'allowSpinning', flag: '--allow-spinning [bool]', env: 'MECHREWARD_ALLOW_SPINNING', kind: 'bool', help: 'let onnxruntime threads spin between runs (faster alone, slower beside a busy event loop)', defaultValue: () => false },
  { key: 'cpuMemArena', flag: '--cpu-mem-arena [bool]', env: 'MECHREWARD_CPU_MEM_ARENA', kind: 'bool', help: "onnxruntime's CPU arena (keeps the largest batch buffer allocated)", defaultValue: () => true },
  { key: 'maxInflight', flag: '--max-inflight <n>', env: 'MECHREWARD_MAX_INFLIGHT', kind: 'int', help: 'score requests admitted at once; more get RESOURCE_EXHAUSTED / 429 at once', defaultValue: () => 64 },
  { key: 'maxTokensPerRequest', flag: '--max-tokens-per-request <n>', env: 'MECHREWARD_MAX_TOKENS_PER_REQUEST', kind: 'int', help: 'tokens (prompt + response) in one request; more get RESOURCE_EXHAUSTED / 413', defaultValue: () => 65536 },
  { key: 'maxSequencesPerRequest', flag: '--max-sequences-per-request <n>', env: 'MECHREWARD_MAX_SEQUENCES_PER_REQUEST', kind: 'int', help: 'sequences in one request; more get RESOURCE_EXHAUSTED / 413', defaultValue: () => 4096 },
  { key: 'maxPacks', flag: '--max-packs <n>', env: 'MECHREWARD_MAX_PACKS', kind: 'int', help: 'packs served at once; a packs directory holding more fails at start-up, and a reload that would add more rejects the extra packs', defaultValue: () => 64 },
  { key: 'maxBatchTokens', flag: '--max-batch-tokens <n>', env: 'MECHREWARD_MAX_BATCH_TOKENS', kind: 'int', help: 'rows per engine run; bounds onnxruntime arena memory (rows x d_sae x 4 bytes)', defaultValue: () => 1024 },
  { key: 'maxQueueTokens', flag: '--max-queue-tokens <n>', env: 'MECHREWARD_MAX_QUEUE_TOKENS', kind: 'int', help: 'token rows waiting for the engine; a request that would overflow it gets RESOURCE_EXHAUSTED / 429 at once', defaultValue: () => 32768 },
  { key: 'maxQueueDelayMs', flag: '--max-queue-delay-ms <n>', env: 'MECHREWARD_MAX_QUEUE_DELAY_MS', kind: 'int', help: 'how long a free worker waits for a fuller batch (0 = run what is queued at once)', defaultValue: () => 0 },
  { key: 'maxMessageBytes', flag: '--max-message-bytes <n>', env: 'MECHREWARD_MAX_MESSAGE_BYTES', kind: 'int', help: 'largest gRPC message and HTTP body accepted', defaultValue: () => 256 * 1024 * 1024 },
  { key: 'shutdownGraceMs', flag: '--shutdown-grace-ms <n>', env: 'MECHREWARD_SHUTDOWN_GRACE_MS', kind: 'int', help: 'on SIGTERM, how long in-flight requests may finish before a forced stop', defaultValue: () => 30000 },
  { key: 'allowUnvalidated', flag: '--allow-unvalidated [bool]', env: 'MECHREWARD_ALLOW_UNVALIDATED', kind: 'bool', help: 'serve packs that have not passed stage gate 1 (held-out rho >= 0.30 with n and data hash); each is logged', defaultValue: () => false },
  { key: 'runsDb', flag: '--runs-db <target>', env: 'MECHREWARD_RUNS_DB', kind: 'string', help: "runs database of the canary monitor: an SQLite file (WAL), a postgres://user@host/db URL shared by replicas, or '' to keep it in memory; every acknowledged count is committed first", defaultValue: () => 'mechreward-runs.sqlite' },
  { key: 'runsDbMoveAside', flag: '--runs-db-move-aside [bool]', env: 'MECHREWARD_RUNS_DB_MOVE_ASIDE', kind: 'bool', help: 'when the SQLite runs file is unreadable or truncated, rename it to <file>.corrupt-<time> and start an empty one (without it, start-up stops and names the file)', defaultValue: () => false },
  { key: 'maxRuns', flag: '--max-runs <n>', env: 'MECHREWARD_MAX_RUNS', kind: 'int', help: 'runs the monitor keeps; past it the runs idle longest are evicted with their history (mechreward_runs_evicted_total)', defaultValue: () => 1000 },
  { key: 'runsFlushMs', flag: '--runs-flush-ms <n>', env: 'MECHREWARD_RUNS_FLUSH_MS', kind: 'int', help: "how long a run-tagged request's write waits to be grouped with others into one transaction (0 = the current event-loop turn)", defaultValue: () => 2 },
  { key: 'maxBodyBytes', flag: '--max-body-bytes <n>', env: 'MECHREWARD_MAX_BODY_BYTES', kind: 'int', help: 'largest HTTP body (0 = sized at start-up to the largest legitimate Score request: max_tokens_per_request rows of the widest pack in base64, plus text; never above max_message_bytes)', defaultValue: () => 0 },
  { key: 'httpRequestTimeoutMs', flag: '--http-request-timeout-ms <n>', env: 'MECHREWARD_HTTP_REQUEST_TIMEOUT_MS', kind: 'int', help: 'an HTTP request (headers and body) must arrive within this time, or the connection is closed', defaultValue: () => 60000 },
  { key: 'httpHeadersTimeoutMs', flag: '--http-headers-timeout-ms <n>', env: 'MECHREWARD_HTTP_HEADERS_TIMEOUT_MS', kind: 'int', help: "an HTTP request's headers must arrive within this time", defaultValue: () => 15000 },
  { key: 'httpKeepAliveTimeoutMs', flag: '--http-keep-alive-timeout-ms <n>', env: 'MECHREWARD_HTTP_KEEP_ALIVE_TIMEOUT_MS', kind: 'int', help: 'an idle keep-alive HTTP connection is closed after this time', defaultValue: () => 72000 },
  { key: 'httpMaxConnections', flag: '--http-max-connections <n>', env: 'MECHREWARD_HTTP_MAX_CONNECTIONS', kind: 'int', help: 'open HTTP connections at once; more are closed on arrival', defaultValue: () => 1024 },
  { key: 'allowRemoteWithoutAuth', flag: '--allow-remote-without-auth [bool]', env: 'MECHREWARD_ALLOW_REMOTE_WITHOUT_AUTH', kind: 'bool', help: 'allow --host beyond loopback without --auth-token (anyone who reaches the port can score, read runs and reload packs); refused by default', defaultValue: () => false },
  { key: 'allowPacksOutside', flag: '--allow-packs-outside [bool]', env: 'MECHREWARD_ALLOW_PACKS_OUTSIDE', kind: 'bool', help: 'serve pack folders, SAEs and weight files that resolve (through symlinks or absolute paths) outside --packs; refused by default', defaultValue: () => false },
  { key: 'authToken', flag: '--auth-token <token>', env: 'MECHREWARD_AUTH_TOKEN', kind: 'string', help: "require 'Authorization: Bearer <token>' on every RPC and every HTTP data route ('' = none; /healthz, /readyz, /metrics and the page's static files stay open); prefer the variable: flags show in ps", defaultValue: () => '', secret: true },
  { key: 'tlsCert', flag: '--tls-cert <path>', env: 'MECHREWARD_TLS_CERT', kind: 'string', help: "PEM server certificate (chain): serve gRPC and HTTP over TLS ('' = plaintext, fine on loopback)", defaultValue: () => '' },
  { key: 'tlsKey', flag: '--tls-key <path>', env: 'MECHREWARD_TLS_KEY', kind: 'string', help: 'PEM private key of --tls-cert', defaultValue: () => '' },
  { key: 'tlsClientCa', flag: '--tls-client-ca <path>', env: 'MECHREWARD_TLS_CLIENT_CA', kind: 'string', help: "PEM CA bundle: require client certificates signed by it on both transports (mutual TLS; '' = no client certificates)", defaultValue: () => '' },
  { key: 'readerUrl', flag: '--reader-url <url>', env: 'MECHREWARD_READER_URL', kind: 'string', help: "base URL of a reader process (python -m mechreward_client.reader) that turns text into activations for POST /v1/openrlhf/{pack} ('' = that route answers 501)", defaultValue: () => '' },
  { key: 'readerTimeoutMs', flag: '--reader-timeout-ms <n>', env: 'MECHREWARD_READER_TIMEOUT_MS', kind: 'int', help: "deadline of one reader call; past it the OpenRLHF route answers the fallback reward with extra_logs.mechreward_unscored = 1", defaultValue: () => 60000 },
  { key: 'faultInjection', flag: '--fault-injection [bool]', env: 'MECHREWARD_FAULT_INJECTION', kind: 'bool', help: 'TESTS ONLY: let the test suite make an engine worker exit (process.exit inside the worker thread) to prove recovery; never set in production', defaultValue: () => false },
  { key: 'shm', flag: '--shm [bool]', env: 'MECHREWARD_SHM', kind: 'bool', help: "accept shared-memory descriptors from co-located clients of the same user (docs/shared-memory.md); a client elsewhere is refused by the nonce check and sends bytes", defaultValue: () => true },
  { key: 'shmDir', flag: '--shm-dir <dir>', env: 'MECHREWARD_SHM_DIR', kind: 'string', help: 'where registered segment keys are opened (the POSIX shared-memory mount)', defaultValue: () => '/dev/shm' },
  { key: 'shmLeaseMs', flag: '--shm-lease-ms <n>', env: 'MECHREWARD_SHM_LEASE_MS', kind: 'int', help: 'a shared-memory registration unused for this long is closed; its next descriptor gets NOT_FOUND and the client registers again', defaultValue: () => 600000 },
  { key: 'logLevel', flag: '--log-level <level>', env: 'MECHREWARD_LOG_LEVEL', kind: 'string', help: 'pino log level', defaultValue: () => 'info', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
];

/** Loopback only: 127.0.0.0/8, ::1 and localhost. Anything else (0.0.0.0, ::, a LAN address) is remote. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h);
}

/** The resolved configuration with secrets masked, for logs and /info. */
export function redactedConfig(cfg: ServeConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...cfg };
  for (const spec of SERVE_OPTIONS) if (spec.secret && cfg[spec.key]) out[spec.key] = '<redacted>';
  // A postgres:// runs URL may carry a password.
  out.runsDb = cfg.runsDb.replace(/^(postgres(?:ql)?:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
  return out;
}

function invalid(message: string): MechRewardError {
  return new MechRewardError('MR_ERR_CONFIG_INVALID', message);
}

function coerce(spec: OptionSpec, raw: unknown): string | number | boolean {
  if (spec.kind === 'string') {
    const s = String(raw);
    if (spec.choices && !spec.choices.includes(s)) throw invalid(`${spec.flag.split(' ')[0]} (${spec.env}): ${JSON.stringify(s)} is not one of ${spec.choices.join(', ')}`);
    return s;
  }
  if (spec.kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    const s = String(raw).toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off'].includes(s)) return false;
    throw invalid(`${spec.flag.split(' ')[0]} (${spec.env}): ${JSON.stringify(raw)} is not a boolean`);
  }
  const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
  if (!Number.isSafeInteger(n) || n < 0) throw invalid(`${spec.flag.split(' ')[0]} (${spec.env}): ${JSON.stringify(raw)} is not a non-negative integer`);
  return n;
}

/**
 * Resolves the configuration: explicit values (CLI flags or a caller's overrides) win over environment
 * variables, which win over defaults. Validated as a whole.
 */
export function resolveServeConfig(explicit: Partial<Record<keyof ServeConfig, unknown>>, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const out: Record<string, unknown> = {};
  for (const spec of SERVE_OPTIONS) {
    const raw = explicit[spec.key] ?? env[spec.env];
    out[spec.key] = raw === undefined ? spec.defaultValue() : coerce(spec, raw);
  }
  const cfg = out as unknown as ServeConfig;
  const cores = os.availableParallelism();
  if (cfg.workers < 1) throw invalid('--workers must be at least 1');
  if (cfg.intraOpThreads === 0) cfg.intraOpThreads = Math.max(1, Math.floor(cores / cfg.workers));
  if (cfg.workers * cfg.intraOpThreads > cores) {
    throw invalid(`--workers ${cfg.workers} x --intra-op-threads ${cfg.intraOpThreads} = ${cfg.workers * cfg.intraOpThreads} onnxruntime threads, more than the ${cores} cores`);
  }
  for (const key of ['maxInflight', 'maxTokensPerRequest', 'maxSequencesPerRequest', 'maxPacks', 'maxBatchTokens', 'maxQueueTokens', 'maxMessageBytes', 'maxRuns', 'httpRequestTimeoutMs', 'httpHeadersTimeoutMs', 'httpMaxConnections'] as const) {
    if (cfg[key] < 1) throw invalid(`${key} must be at least 1`);
  }
  if (cfg.grpcPort > 65535 || cfg.httpPort > 65535) throw invalid('ports must be at most 65535');
  if (Boolean(cfg.tlsCert) !== Boolean(cfg.tlsKey)) throw invalid('--tls-cert and --tls-key go together');
  if (cfg.tlsClientCa && !cfg.tlsCert) throw invalid('--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)');
  if (cfg.readerUrl && !/^https?:\/\/[^/]/.test(cfg.readerUrl)) throw invalid(`--reader-url (MECHREWARD_READER_URL): ${JSON.stringify(cfg.readerUrl)} is not an http:// or https:// URL`);
  if (cfg.readerTimeoutMs < 1) throw invalid('readerTimeoutMs must be at least 1');
  if (cfg.shmLeaseMs < 1000) throw invalid('--shm-lease-ms must be at least 1000');
  cfg.shmDir = path.resolve(cfg.shmDir);
  cfg.packs = path.resolve(cfg.packs);
  if (cfg.grpcSocket) cfg.grpcSocket = path.resolve(cfg.grpcSocket.startsWith('unix:') ? cfg.grpcSocket.slice('unix:'.length) : cfg.grpcSocket);
  if (cfg.runsDb && !/^postgres(ql)?:\/\//i.test(cfg.runsDb)) cfg.runsDb = path.resolve(cfg.runsDb);
  if (!cfg.authToken && !cfg.allowRemoteWithoutAuth && !isLoopbackHost(cfg.host)) {
    throw invalid(`--host ${cfg.host} is reachable beyond this machine and no --auth-token is set: anyone who reaches the ports could score, read runs and reload packs. Set --auth-token (MECHREWARD_AUTH_TOKEN), bind 127.0.0.1, or pass --allow-remote-without-auth`);
  }
  return cfg;
}
