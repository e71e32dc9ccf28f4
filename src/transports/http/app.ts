// Builds the HTTP app (unbound): health, readiness, metrics, info, pack listing and scoring in JSON or
// msgpack. Errors go through the same catalogue as gRPC (one setErrorHandler).
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { pack as msgpackEncode, unpack as msgpackDecode } from 'msgpackr';

import { MechRewardError, toHttpError } from '../../errors.js';
import type { SequenceInput } from '../../core/decode.js';
import { describePack } from '../../core/describe.js';
import { parseStep } from '../../core/step.js';
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
function toSequences(body: unknown): { pack: string; runId: string; step: number | undefined; sequences: SequenceInput[] } {
  if (typeof body !== 'object' || body === null) throw new MechRewardError('MR_ERR_MALFORMED_BODY', 'body: expected an object {pack, sequences, run_id}');
  const b = body as Record<string, unknown>;
  if (typeof b.pack !== 'string') throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'pack: must be a string');
  if (!Array.isArray(b.sequences)) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'sequences: must be a list');
  const sequences = (b.sequences as WireSequence[]).map((s, i) => {
    if (typeof s !== 'object' || s === null) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `sequences[${i}]: must be an object`);
    let activations: Uint8Array;
    if (s.activations instanceof Uint8Array) activations = s.activations;
    else if (typeof s.activations === 'string') activations = Buffer.from(s.activations, 'base64');
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
  return { pack: b.pack, runId: typeof b.run_id === 'string' ? b.run_id : '', step: parseStep(b.step), sequences };
}

export function buildHttpApp(service: Service, tls?: TlsMaterial): FastifyInstance {
  const options = {
    logger: false,
    bodyLimit: service.config.maxMessageBytes,
    // Errors fastify raises before routing (a path with bad %-encoding) answer in the catalogue's shape too.
    frameworkErrors: (err: Error & { code?: string }, _req: FastifyRequest, reply: FastifyReply) => {
      const e = err.code === 'FST_ERR_BAD_URL' ? new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'path: not a valid URL (bad %-encoding)') : new MechRewardError('MR_ERR_MALFORMED_BODY', 'request: could not be parsed');
      const { statusCode, body } = toHttpError(e);
      void reply.code(statusCode).send(body);
    },
  };
  // Routes and hooks are the same over HTTPS; only the server type differs, which the handlers never see.
  const app = (tls ? Fastify({ ...options, https: httpsOptions(tls) }) : Fastify(options)) as unknown as FastifyInstance;
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
    if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `body: larger than max_message_bytes ${service.config.maxMessageBytes}`);
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
  const open = (url: string) => ['/', '/healthz', '/readyz', '/metrics', '/monitor'].includes(url) || url.startsWith('/monitor/assets/');
  app.addHook('onRequest', async (req) => {
    if (!open(req.url.split('?')[0]!)) service.auth.check(req.headers.authorization);
  });

  app.get('/healthz', async () => ({ status: 'alive' }));
  app.get('/readyz', async (_req, reply) => {
    if (service.isReady()) return { status: 'ready', packs: [...service.packs.keys()] };
    return reply.code(503).send({ status: 'not_ready', reason: service.notReadyReason() });
  });
  app.get('/metrics', async (_req, reply) => {
    service.refreshGauges();
    return reply.type(service.metrics.registry.contentType).send(await service.metrics.registry.metrics());
  });
  app.get('/info', async () => service.info());
  app.get('/v1/packs', async () => ({ packs: service.describePacks() }));
  app.get<{ Params: { pack: string } }>('/v1/packs/:pack', async (req) => describePack(service.scorer.getPack(req.params.pack)));
  // Hot reload of the packs directory; behind the auth token like every data route. 200 with what changed
  // and what was rejected (with reasons); the packs served before keep serving whatever the outcome.
  app.post('/admin/reload', async () => service.reloadPacks());
  app.get('/v1/runs', async () => ({ runs: service.monitor.list() }));
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
