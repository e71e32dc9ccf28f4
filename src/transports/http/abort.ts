// An AbortSignal that fires when an HTTP caller goes away before its answer is written.
// It listens to the response's 'close', not the request's: Node (>= 16) closes the request stream as soon as
// its body has been read, which would cancel every request that has to wait in the engine queue.
import type { FastifyReply } from 'fastify';

export function callerGoneSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
