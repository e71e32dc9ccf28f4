// Dynamic batching through the real server: concurrent requests are merged into shared engine runs and get
// the same answers as alone; the queue is bounded; a request cancelled while queued costs no engine time.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import { writeBigPack } from '../helpers/bigpack.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, score, startTestServer } from '../helpers/server.js';

let root: string;

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-batching-'));
  cpSync(path.join(PARITY_PACKS, 'topk-saelens'), path.join(root, 'topk-saelens'), { recursive: true });
  cpSync(path.join(PARITY_PACKS, 'topk-saelens-selected'), path.join(root, 'topk-saelens-selected'), { recursive: true });
  writeBigPack(root);
});

after(() => rmSync(root, { recursive: true, force: true }));

function request(pack: string, numTokens: number, seed: number, dModel = 64): ScoreRequest {
  const rows = new Float32Array(numTokens * dModel).map((_, i) => Math.sin(seed * 7.1 + i * 0.37) * 3);
  return { pack, sequences: [{ activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: numTokens, score_from: 1 }] };
}

async function counter(server: Awaited<ReturnType<typeof startTestServer>>, name: 'executions'): Promise<number> {
  return (await server.service.metrics[name].get()).values.reduce((a, v) => a + v.value, 0);
}

test('concurrent requests are merged into shared engine runs and get the answers they get alone', async () => {
  const server = await startTestServer(root, { maxQueueDelayMs: 50, maxBatchTokens: 1024 });
  const client = grpcClient(server.grpcPort);
  try {
    const requests = Array.from({ length: 24 }, (_, i) => request(i % 3 === 0 ? 'topk-saelens-selected' : 'topk-saelens', 5 + (i % 7), i));
    const alone: Awaited<ReturnType<typeof score>>[] = [];
    for (const r of requests) alone.push(await score(client, r));
    const runsBefore = await counter(server, 'executions');
    const together = await Promise.all(requests.map((r) => score(client, r)));
    const runs = (await counter(server, 'executions')) - runsBefore;
    assert.ok(runs < requests.length / 2, `24 concurrent requests took ${runs} engine runs; expected merging`);
    together.forEach((t, i) => {
      assert.ok(t.ok, t.details);
      const a = alone[i]!.response!.results[0]!;
      const b = t.response!.results[0]!;
      a.token_rewards.forEach((v, j) => assert.ok(Math.abs(v - b.token_rewards[j]!) <= 1e-5 * Math.max(1, Math.abs(v)), `request ${i} token ${j}: ${v} vs ${b.token_rewards[j]}`));
      assert.deepEqual(b.flags.map((f) => f.name), a.flags.map((f) => f.name));
    });
  } finally {
    client.close();
    await server.close();
  }
});

test('a request that would overflow max_queue_tokens is refused at once with RESOURCE_EXHAUSTED', async () => {
  const server = await startTestServer(root, { maxQueueTokens: 100 });
  const client = grpcClient(server.grpcPort);
  try {
    const tooBig = await score(client, request('topk-saelens', 200, 1));
    assert.equal(tooBig.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(tooBig.details!, /MR_ERR_OVERLOADED: engine queue is full \(0 of 100 token rows waiting; this request needs 199\)/);
    const fits = await score(client, request('topk-saelens', 50, 1));
    assert.ok(fits.ok, fits.details);
  } finally {
    client.close();
    await server.close();
  }
});

test('a request cancelled while queued is dropped before any engine work', async () => {
  const server = await startTestServer(root);
  const client = grpcClient(server.grpcPort);
  try {
    const tokens = async () => (await server.service.metrics.batchTokens.get()).values.find((v) => v.metricName === 'mechreward_batch_tokens_sum')!.value;
    const before = await tokens();
    const busy = score(client, request('big', 4096, 1, 512)); // keeps the only worker busy
    while (server.service.admission.current === 0) await new Promise((r) => setTimeout(r, 1));
    const cancelled = await new Promise<grpc.status>((resolve) => {
      const call = client.Score(request('big', 2048, 2, 512), (err) => resolve(err ? err.code : grpc.status.OK));
      setTimeout(() => call.cancel(), 30);
    });
    assert.equal(cancelled, grpc.status.CANCELLED);
    const done = await busy;
    assert.ok(done.ok, done.details);
    // Wait for the pool to pass the cancelled job (it is dropped when it leaves the queue).
    const small = await score(client, request('topk-saelens', 3, 3));
    assert.ok(small.ok);
    assert.equal((await tokens()) - before, 4095 + 2, 'only the busy request and the small one reached the engine');
  } finally {
    client.close();
    await server.close();
  }
});

test('concurrent HTTP requests that wait in the queue are scored, not cancelled', async () => {
  // Regression: the HTTP handler once tied its cancel signal to the request stream's 'close', which Node emits
  // as soon as the body is read, so every request that had to queue behind another came back 499.
  const server = await startTestServer(root);
  try {
    const body = (i: number) => {
      const r = request('topk-saelens', 200, i).sequences![0]!;
      return JSON.stringify({ pack: 'topk-saelens', sequences: [{ ...r, activations: Buffer.from(r.activations as Uint8Array).toString('base64'), dtype: 'f32' }] });
    };
    const statuses = await Promise.all(Array.from({ length: 16 }, (_, i) =>
      fetch(`http://127.0.0.1:${server.httpPort}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(i) }).then((r) => r.status)));
    assert.deepEqual(statuses, new Array(16).fill(200));
  } finally {
    await server.close();
  }
});
