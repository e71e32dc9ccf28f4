// The one wrapper every unary gRPC handler goes through: it derives an AbortSignal from cancellation and
// the deadline, maps errors through the catalogue, records metrics and timing trailers, and calls the
// callback exactly once. Handlers just return a value or throw.
import * as grpc from '@grpc/grpc-js';

import { asMechRewardError, MechRewardError, toGrpcStatus } from '../../errors.js';
import type { Service } from '../../service.js';

export interface CallContext {
  readonly signal: AbortSignal;
  readonly metadata: grpc.Metadata;
  /** Set by handlers to report timings in trailing metadata (milliseconds). */
  timings?: { queueMs: number; inferenceMs: number; tokens: number };
}

export interface UnaryOptions {
  /** Refuse with UNAVAILABLE until the server is ready (scoring RPCs). */
  readonly requiresReady: boolean;
}

export function unary<Req, Res>(
  service: Service,
  method: string,
  options: UnaryOptions,
  handler: (request: Req, ctx: CallContext) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const started = performance.now();
    const controller = new AbortController();
    // grpc-js may signal a client that went away by 'cancelled' or only by 'end' (grpc/grpc-node#2583).
    call.on('cancelled', () => controller.abort());
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    let timer: NodeJS.Timeout | undefined;
    if (Number.isFinite(deadlineMs)) timer = setTimeout(() => controller.abort(), Math.max(0, deadlineMs - Date.now()));
    const ctx: CallContext = { signal: controller.signal, metadata: call.metadata };
    const requestId = String(call.metadata.get('x-request-id')[0] ?? '');

    const finish = (err: unknown, response?: Res): void => {
      if (timer) clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const trailer = new grpc.Metadata();
      trailer.set('x-total-time', (seconds * 1000).toFixed(3));
      if (requestId) trailer.set('x-request-id', requestId);
      if (ctx.timings) {
        trailer.set('x-queue-time', ctx.timings.queueMs.toFixed(3));
        trailer.set('x-inference-time', ctx.timings.inferenceMs.toFixed(3));
        trailer.set('x-compute-tokens', String(ctx.timings.tokens));
      }
      service.metrics.requestDuration.observe({ method }, seconds);
      if (err === null) {
        service.metrics.requests.inc({ method, code: 'OK' });
        callback(null, response, trailer);
        return;
      }
      let e = asMechRewardError(err);
      if (controller.signal.aborted && e.code === 'MR_ERR_CANCELLED' && Number.isFinite(deadlineMs) && Date.now() >= deadlineMs) {
        e = new MechRewardError('MR_ERR_DEADLINE', 'deadline passed before scoring started');
      }
      if (e.code === 'MR_ERR_INTERNAL' || e.code === 'MR_ERR_BACKEND') service.log.error({ err: e.cause ?? e, method, requestId }, 'request failed');
      const status = toGrpcStatus(e);
      service.metrics.requests.inc({ method, code: grpc.status[status.code] });
      service.metrics.failures.inc({ reason: e.entry.errorType });
      if (e.code === 'MR_ERR_NONFINITE_INPUT') service.metrics.nonfinite.inc({ where: 'input' });
      if (e.code === 'MR_ERR_NONFINITE_OUTPUT') service.metrics.nonfinite.inc({ where: 'output' });
      callback({ code: status.code, details: status.details, metadata: trailer });
    };

    try {
      service.auth.check(String(call.metadata.get('authorization')[0] ?? '') || undefined);
    } catch (err) {
      finish(err);
      return;
    }
    if (options.requiresReady && !service.isReady()) {
      finish(new MechRewardError('MR_ERR_NOT_READY', `server is not ready: ${service.notReadyReason()}`));
      return;
    }
    handler(call.request, ctx).then(
      (res) => finish(null, res),
      (err: unknown) => finish(err),
    );
  };
}
