// Builds the HTTP app (unbound): health, readiness, metrics, info, pack listing and scoring in JSON or
// msgpack. Errors go through the same catalogue as gRPC (one setErrorHandler).
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { pack as msgpackEncode, unpack as msgpackDecode } from 'msgpackr';

import { MechRewardError, toHttpError } from '../../errors.js';
import type { SequenceInput } from '../../core/decode.js';
import { describePack } from '../../core/describe.js';
import { hidePaths } from '../../packs/public-path.js';
import { Service } from '../../service.js';
import { httpsOptions, type TlsMaterial } from '../../tls.js';
import { callerGoneSignal } from './abort.js';
import { registerOpenRlhfRoute } from './openrlhf.js';
import { registerMonitorPage } from './page.js';

const MSGPACK = 'application/msgpack';

interface WireSequence {
  activations?: unknown;
  dtype?: unknown;
  num_tokens?: unknown;
  score_from?: unknown;
  text?: unknown;
  expected_answer?: unknown;
  tokens?: unknown;
}

/** HTTP carries the same fields as the proto; JSON sends activations as base64, msgpack as binary. */
function toSequences(body: unknown): { pack: string; runId: string; sequences: SequenceInput[] } {
  if (typeof body !== 'object' || body === null) throw new MechRewardError('MR_ERR_MALFORMED_BODY', 'body: expected an object {pack, sequences, run_id}');
  const b = body as Record<string, unknown>;
  if (typeof b.pack !== 'string') throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'pack: must be a string');
  if (!Array.isArray(b.sequences)) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'sequences: must be a list');
  const sequences = (b.sequences as WireSequence[]).map((s, i) => {
    if (typeof s !== 'object' || s === null) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `sequences[${i}]: must be an object`);
    let activations: Uint8Array;
    if (s.activations instanceof Uint8Array) activations = s.activations;
    else if (typeof s.activations === 'string') activations = strictBase64(s.activations, `sequences[${i}].activations`);
    else throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `sequences[${i}].activations: must be base64 (JSON) or binary (msgpack)`);
    const dtype = typeof s.dtype === 'string' && !s.dtype.startsWith('DTYPE_') ? `DTYPE_${s.dtype.toUpperCase()}` : (s.dtype as string | number);
    const str = (v: unknown, field: string): string => {
      if (v === undefined || v === null) return '';
      if (typeof v !== 'string') throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `sequences[${i}].${field}: must be a string`);
      return v;
    };
    if (s.tokens !== undefined && (!Array.isArray(s.tokens) || !s.tokens.every((t) => typeof t === 'string'))) {
      throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `sequences[${i}].tokens: must be a list of strings`);
    }
    return {
      activations,
      dtype: dtype ?? 'DTYPE_UNSPECIFIED',
      num_tokens: Number(s.num_tokens ?? NaN),
      score_from: Number(s.score_from ?? 0),
      text: str(s.text, 'text'),
      expected_answer: str(s.expected_answer, 'expected_answer'),
      tokens: (s.tokens as string[] | undefined) ?? [],
    };
  });
  if (b.run_id !== undefined && b.run_id !== null && typeof b.run_id !== 'string') throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'run_id: must be a string');
  return { pack: b.pack, runId: typeof b.run_id === 'string' ? b.run_id : '', sequences };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Standard base64 only (RFC 4648 §4, padded): Buffer.from would silently drop any other character. */
function strictBase64(text: string, field: string): Buffer {
  if (text.length % 4 !== 0 || !BASE64.test(text)) {
    throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${field}: not valid base64 (standard alphabet A-Z a-z 0-9 + /, padded with = to a multiple of 4 characters)`);
  }
  return Buffer.from(text, 'base64');
}

/**
 * The default HTTP body limit: the largest legitimate Score request, i.e. max_tokens_per_request rows of the
 * widest pack's d_model as float32 in base64 (4/3), plus 128 bytes per token for token strings and text, plus
 * 1 MiB for the rest; never above max_message_bytes. A hot reload that adds a wider pack keeps the limit set
 * at start-up (set --max-body-bytes for that).
 */
export function defaultBodyLimit(maxTokensPerRequest: number, maxDModel: number, maxMessageBytes: number): number {
  const activations = Math.ceil((maxTokensPerRequest * maxDModel * 4 * 4) / 3);
  return Math.min(maxMessageBytes, activations + maxTokensPerRequest * 128 + 1024 * 1024);
}

export function buildHttpApp(service: Service, tls?: TlsMaterial): FastifyInstance {
  const c = service.config;
  const widest = Math.max(1, ...[...service.packs.values()].map((p) => p.dModel));
  const bodyLimit = c.maxBodyBytes > 0 ? Math.min(c.maxBodyBytes, c.maxMessageBytes) : defaultBodyLimit(c.maxTokensPerRequest, widest, c.maxMessageBytes);
  // Slow clients cannot hold connections: the headers and the whole request must arrive in time (checked
  // every second, not Node's default 30 s), idle keep-alive connections close, and the count is capped.
  const timeouts = { requestTimeout: c.httpRequestTimeoutMs, headersTimeout: Math.min(c.httpHeadersTimeoutMs, c.httpRequestTimeoutMs), connectionsCheckingInterval: 1000 };
  const options = {
    logger: false,
    bodyLimit,
    requestTimeout: c.httpRequestTimeoutMs,
    keepAliveTimeout: c.httpKeepAliveTimeoutMs,
    http: timeouts,
    // Every accepted run_id (128) and pack name (128) fits a path parameter (fastify's default is 100).
    maxParamLength: 512,
    // Errors fastify raises before routing (a path with bad %-encoding) answer in the catalogue's shape too.
    frameworkErrors: (err: Error & { code?: string }, _req: FastifyRequest, reply: FastifyReply) => {
      const e = err.code === 'FST_ERR_BAD_URL' ? new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'path: not a valid URL (bad %-encoding)') : new MechRewardError('MR_ERR_MALFORMED_BODY', 'request: could not be parsed');
      const { statusCode, body } = toHttpError(e);
      void reply.code(statusCode).send(body);
    },
  };
  // Routes and hooks are the same over HTTPS; only the server type differs, which the handlers never see.
  const app = (tls ? Fastify({ ...options, https: { ...httpsOptions(tls), ...timeouts } }) : Fastify(options)) as unknown as FastifyInstance;
  app.server.maxConnections = c.httpMaxConnections;
  app.server.headersTimeout = timeouts.headersTimeout;
  app.addContentTypeParser(MSGPACK, { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, msgpackDecode(body as Buffer));
    } catch {
      done(new MechRewardError('MR_ERR_MALFORMED_BODY', 'body: not valid msgpack'), undefined);
    }
  });

  app.setErrorHandler((err: unknown, _req, reply) => {
    let e = err;
    const fastifyCode = (err as { code?: string }).code;
    if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `body: larger than the HTTP body limit of ${bodyLimit} bytes (--max-body-bytes; by default the largest legitimate Score request)`);
    else if (fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') e = new MechRewardError('MR_ERR_MALFORMED_BODY', `content-type: use application/json or ${MSGPACK}`);
    else if (fastifyCode?.startsWith('FST_ERR_CTP') || (err as { statusCode?: number }).statusCode === 400) e = new MechRewardError('MR_ERR_MALFORMED_BODY', 'body: could not be parsed');
    const { statusCode, body } = toHttpError(e);
    if (statusCode >= 500) service.log.error({ err: e instanceof MechRewardError ? (e.cause ?? e) : e }, 'http request failed');
    if (body.code === 'MR_ERR_OVERLOADED') void reply.header('retry-after', '1');
    void reply.code(statusCode).send(body);
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    service.metrics.requests.inc({ method: `HTTP ${req.method} ${route}`, code: String(reply.statusCode) });
    service.metrics.requestDuration.observe({ method: `HTTP ${req.method} ${route}` }, reply.elapsedTime / 1000);
  });

  // With an auth token, every data route needs it. Liveness, readiness and metrics stay open (orchestrators
  // and Prometheus probe them), and so do the monitor page's static files, which hold no data: the page sends
  // the token from its URL fragment when it fetches /v1/runs.
  const open = (url: string) => ['/healthz', '/readyz', '/metrics', '/monitor'].includes(url) || url.startsWith('/monitor/assets/');
  app.addHook('onRequest', async (req) => {
    if (!open(req.url.split('?')[0]!)) service.auth.check(req.headers.authorization);
  });

  app.get('/healthz', async () => ({ status: 'alive' }));
  app.get('/readyz', async (_req, reply) => {
    if (service.isReady()) return { status: 'ready', packs: [...service.packs.keys()] };
    return reply.code(503).send({ status: 'not_ready', reason: service.notReadyReason() });
  });
  app.get('/metrics', async (_req, reply) => {
    await service.refreshGauges();
    return reply.type(service.metrics.registry.contentType).send(await service.metrics.registry.metrics());
  });
  app.get('/info', async () => service.info());
  app.get('/v1/packs', async () => ({ packs: service.describePacks() }));
  app.get<{ Params: { pack: string } }>('/v1/packs/:pack', async (req) => describePack(service.scorer.getPack(req.params.pack)));
  // Hot reload of the packs directory; behind the auth token like every data route. 200 with what changed
  // and what was rejected (with reasons); the packs served before keep serving whatever the outcome.
  app.post('/admin/reload', async () => {
    try {
      return await service.reloadPacks();
    } catch (err) {
      // The answer names no absolute path (the log has the full message).
      if (err instanceof MechRewardError) throw new MechRewardError(err.code, hidePaths(err.message, service.config.packs), err);
      throw err;
    }
  });
  app.get('/v1/runs', async () => ({ runs: await service.monitor.list() }));
  app.get<{ Params: { run_id: string } }>('/v1/runs/:run_id', async (req) => service.monitor.get(req.params.run_id));
  registerMonitorPage(app);
  registerOpenRlhfRoute(app, service);

  app.post('/v1/score', async (req: FastifyRequest, reply: FastifyReply) => {
    if (!service.isReady()) throw new MechRewardError('MR_ERR_NOT_READY', `server is not ready: ${service.notReadyReason()}`);
    const input = toSequences(req.body);
    const out = await service.scorer.score(input, callerGoneSignal(reply));
    service.recordScore(out);
    void reply.header('x-queue-time', out.queueMs.toFixed(3)).header('x-inference-time', out.inferenceMs.toFixed(3)).header('x-compute-tokens', String(out.tokens));
    const body = { pack: out.pack, results: Service.wireResults(out) };
    if (req.headers['content-type']?.startsWith(MSGPACK) || req.headers.accept === MSGPACK) {
      return reply.type(MSGPACK).send(msgpackEncode(body));
    }
    return body;
  });
  return app;
}
