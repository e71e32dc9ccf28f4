// Faults while requests are in flight: a caller that cancels or whose deadline passes mid-batch (its queued
// chunks are dropped, counted in mechreward_dropped_rows_total, and others are undisturbed); an engine worker
// that dies (in-flight work gets UNAVAILABLE / MR_ERR_WORKER_LOST, readiness drops and comes back, queued work
// is served by the replacement); SIGTERM on the real command with work in flight (readiness flips first,
// in-flight work finishes or gets UNAVAILABLE, exit within --shutdown-grace-ms).
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';

import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import type { RunningServer } from '../../src/server.js';
import { writeBigPack } from '../helpers/bigpack.js';
import { spawnServe } from '../helpers/child-server.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

let root: string;

before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-faults-'));
  cpSync(path.join(PARITY_PACKS, 'topk-saelens'), path.join(root, 'topk-saelens'), { recursive: true });
  writeBigPack(root);
});

after(() => rmSync(root, { recursive: true, force: true }));

function request(pack: string, numTokens: number, seed: number, dModel: number): ScoreRequest {
  const rows = new Float32Array(numTokens * dModel).map((_, i) => Math.sin(seed * 7.1 + i * 0.37) * 3);
  return { pack, sequences: [{ activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: numTokens, score_from: 0 }] };
}
const small = request('topk-saelens', 9, 1, 64);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function counterValue(server: RunningServer, metric: 'rowsDropped' | 'executions' | 'workerRestarts'): Promise<number> {
  return (await server.service.metrics[metric].get()).values.reduce((a, v) => a + v.value, 0);
}
async function dispatchedRows(server: RunningServer): Promise<number> {
  return (await server.service.metrics.batchTokens.get()).values.find((v) => v.metricName === 'mechreward_batch_tokens_sum')!.value;
}

/** Status updates of a grpc.health.v1 Watch stream on the whole server, in arrival order. */
function watchHealth(port: number): { statuses: string[]; ended: Promise<void>; close(): void } {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
    Watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
    close(): void;
  };
  const statuses: string[] = [];
  const stream = c.Watch({ service: '' });
  stream.on('data', (m: { status: string }) => statuses.push(m.status));
  const ended = new Promise<void>((resolve) => {
    stream.on('error', () => resolve());
    stream.on('end', () => resolve());
  });
  return { statuses, ended, close: () => (stream.cancel(), c.close()) };
}

for (const how of ['cancel', 'deadline'] as const) {
  test(`a caller whose ${how === 'cancel' ? 'call is cancelled' : 'deadline passes'} mid-batch: its queued chunks are dropped, counted, and a concurrent request is undisturbed`, async () => {
    const server = await startTestServer(root, { maxBatchTokens: 512 });
    const victim = grpcClient(server.grpcPort);
    const other = grpcClient(server.grpcPort, { 'grpc.channel_id': 2 } as grpc.ClientOptions);
    try {
      const alone = await score(other, small);
      assert.ok(alone.ok, alone.details);
      const total = 8192; // 16 chunks of 512 rows of a 512 x 16384 SAE
      // The deadline must pass before all 16 chunks can run, however fast this machine is: size it from one
      // chunk's measured time (best of two), 4 chunks' worth. (Sizing, not a timed assertion: a deadline that
      // passes even before the first chunk starts still leaves every row dropped and the sum exact.)
      let chunkMs = Infinity;
      for (let i = 0; i < 2; i++) {
        const t0 = performance.now();
        assert.ok((await score(other, request('big', 512, 3, 512))).ok);
        chunkMs = Math.min(chunkMs, performance.now() - t0);
      }
      const [dropped0, dispatched0] = [await counterValue(server, 'rowsDropped'), await dispatchedRows(server)];
      let status: grpc.status | undefined;
      const victimDone = new Promise<void>((resolve) => {
        const deadline = how === 'deadline' ? Date.now() + 4 * chunkMs : Date.now() + 600_000;
        const call = victim.Score(request('big', total, 2, 512), { deadline }, (err) => ((status = err ? err.code : grpc.status.OK), resolve()));
        if (how === 'cancel') {
          // Cancel once the engine has started on it (its first chunk is dispatched).
          void (async () => {
            while ((await dispatchedRows(server)) - dispatched0 < 512) await sleep(2);
            call.cancel();
          })();
        }
      });
      const concurrent = await score(other, small);
      await victimDone;
      // The server side finishes the victim when its signal aborts; wait for that, not for a clock.
      while (server.service.admission.current > 0) await sleep(2);
      assert.equal(status, how === 'cancel' ? grpc.status.CANCELLED : grpc.status.DEADLINE_EXCEEDED);
      assert.ok(concurrent.ok, concurrent.details);
      assert.deepEqual(concurrent.response, alone.response, 'the concurrent request got a different answer');
      const dropped = (await counterValue(server, 'rowsDropped')) - dropped0;
      const ranForVictim = (await dispatchedRows(server)) - dispatched0 - 9; // minus the concurrent small request
      const after = await score(other, small);
      assert.deepEqual(after.response, alone.response);
      assert.ok(dropped > 0, `no rows dropped (ran ${ranForVictim})`);
      assert.ok(dropped % 512 === 0, `dropped ${dropped} is not whole chunks`);
      assert.equal(ranForVictim + dropped, total, `ran ${ranForVictim} + dropped ${dropped} should be the ${total} rows sent`);
      console.log(`# ${how}: ${ranForVictim} of ${total} rows ran, ${dropped} dropped unrun`);
    } finally {
      victim.close();
      other.close();
      await server.close();
    }
  });
}

test('an HTTP caller that disconnects mid-batch: its queued chunks are dropped, not run', async () => {
  const server = await startTestServer(root, { maxBatchTokens: 512 });
  try {
    const [dropped0, dispatched0] = [await counterValue(server, 'rowsDropped'), await dispatchedRows(server)];
    const rows = new Float32Array(8192 * 512).map((_, i) => Math.sin(i * 0.37));
    const controller = new AbortController();
    const call = fetch(httpUrl(server, '/v1/score'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pack: 'big', sequences: [{ activations: Buffer.from(rows.buffer).toString('base64'), dtype: 'f32', num_tokens: 8192, score_from: 0 }] }),
      signal: controller.signal,
    }).catch((err: Error) => err.name);
    while ((await dispatchedRows(server)) - dispatched0 < 512) await sleep(2);
    controller.abort();
    assert.equal(await call, 'AbortError');
    while (server.service.admission.current > 0) await sleep(2);
    const dropped = (await counterValue(server, 'rowsDropped')) - dropped0;
    const ran = (await dispatchedRows(server)) - dispatched0;
    assert.ok(dropped > 0, `nothing dropped (ran ${ran})`);
    assert.equal(ran + dropped, 8192);
  } finally {
    await server.close();
  }
});

test('an engine worker that dies: in-flight work gets UNAVAILABLE (MR_ERR_WORKER_LOST), readiness drops and recovers, queued work is served', async () => {
  const server = await startTestServer(root, { faultInjection: true });
  const client = grpcClient(server.grpcPort);
  const health = watchHealth(server.grpcPort);
  try {
    const alone = await score(client, small);
    assert.ok(alone.ok, alone.details);
    while (!health.statuses.includes('SERVING')) await sleep(2);
    // A: 8 chunks of the big pack. B: a small request queued behind them. Once B is queued, arm the fault
    // while A still has chunks waiting: the fault message reaches the worker before A's next chunk does
    // (one message port, in order), so the worker exits on one of A's chunks with B still queued.
    const dispatched0 = await dispatchedRows(server);
    const lostCall = score(client, request('big', 8192, 3, 512));
    while ((await dispatchedRows(server)) === dispatched0) await sleep(2);
    const queuedCall = score(client, small);
    while (server.service.admission.current < 2) await sleep(1);
    const dispatched = await dispatchedRows(server);
    assert.ok(dispatched - dispatched0 < 8192, 'A finished before the fault could be armed');
    server.injectWorkerExit();
    const [lost, queued] = await Promise.all([lostCall, queuedCall]);
    assert.equal(lost.code, grpc.status.UNAVAILABLE, lost.details);
    assert.match(lost.details!, /^MR_ERR_WORKER_LOST: engine worker exited \(code 70\) while scoring this request; a replacement is starting, retry/);
    assert.ok(queued.ok, `the request queued behind the crash failed: ${queued.details}`);
    assert.deepEqual(queued.response, alone.response, 'the request queued behind the crash got a different answer');
    assert.ok((await counterValue(server, 'rowsDropped')) > 0, "the failed request's remaining chunks were dropped, not run");
    while (!server.service.isReady()) await sleep(5);
    const retried = await score(client, request('big', 8192, 3, 512));
    assert.ok(retried.ok, `the retry after the replacement failed: ${retried.details}`);
    assert.equal(await counterValue(server, 'workerRestarts'), 1);
    while (health.statuses.at(-1) !== 'SERVING') await sleep(2);
    assert.deepEqual(health.statuses, ['SERVING', 'NOT_SERVING', 'SERVING'], 'gRPC health went NOT_SERVING while the worker was replaced');
    assert.equal((await fetch(httpUrl(server, '/readyz'))).status, 200);
    const failures = (await server.service.metrics.failures.get()).values.find((v) => v.labels.reason === 'not_ready')!.value;
    assert.equal(failures, 1, 'exactly one request failed with a not_ready class error');
  } finally {
    health.close();
    client.close();
    await server.close();
  }
});

test('SIGTERM with work in flight: readiness flips first, every call finishes OK or gets UNAVAILABLE, a forced exit when --shutdown-grace-ms ends', async () => {
  const graceMs = 1500;
  const s = await spawnServe(['--packs', root, '--grpc-port', '0', '--http-port', '0', '--allow-unvalidated', '--max-batch-tokens', '512', '--shutdown-grace-ms', String(graceMs)]);
  const client = grpcClient(s.grpcPort);
  const health = watchHealth(s.grpcPort);
  const events: string[] = [];
  try {
    while (!health.statuses.includes('SERVING')) await sleep(2);
    void health.ended.then(() => events.push(`watch ended after ${health.statuses.join(',')}`));
    // 8 x 4096 rows of the big pack: far more work than fits in the grace period on any machine we run on.
    const calls = Array.from({ length: 8 }, (_, i) =>
      score(client, request('big', 4096, 10 + i, 512), 600_000).then((o) => {
        events.push(`call ${o.ok ? 'OK' : grpc.status[o.code!]}`);
        return o;
      }),
    );
    // Wait until the engine is busy (a batch has run), then stop.
    const executions = async () => Number(/^mechreward_executions_total (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${s.httpPort}/metrics`)).text())?.[1] ?? 0);
    while ((await executions()) < 2) await sleep(20);
    const t0 = performance.now();
    s.child.kill('SIGTERM');
    const code = await s.exited;
    const elapsed = performance.now() - t0;
    const outcomes = await Promise.all(calls);
    const ok = outcomes.filter((o) => o.ok).length;
    const unavailable = outcomes.filter((o) => o.code === grpc.status.UNAVAILABLE);
    assert.equal(ok + unavailable.length, 8, `other statuses: ${outcomes.map((o) => (o.ok ? 'OK' : `${grpc.status[o.code!]} ${o.details}`)).join('; ')}`);
    assert.ok(unavailable.length > 0, 'expected queued work to be refused at the end of the grace period');
    assert.ok(unavailable.every((o) => /MR_ERR_NOT_READY: server is shutting down/.test(o.details!)), unavailable.map((o) => o.details).join('; '));
    assert.equal(code, 1, 'a forced stop exits 1');
    const watchEnd = events.findIndex((e) => e.startsWith('watch ended'));
    assert.ok(watchEnd >= 0 && events[watchEnd]!.endsWith('SERVING,NOT_SERVING'), `health: ${events.join(' | ')}`);
    assert.ok(events.slice(0, watchEnd).every((e) => e !== 'call UNAVAILABLE'), `readiness must flip before any call is refused: ${events.join(' | ')}`);
    // The grace period, not the queued work, ended the drain: the server says it forced the stop (its grace
    // timer won the race against the drain) and refused the rest. Counted, not timed: no wall-clock bound.
    const stopped = s.logs.map((l) => JSON.parse(l) as { msg?: string; forced?: boolean }).find((l) => l.msg === 'stopped');
    assert.equal(stopped?.forced, true);
    console.log(`# SIGTERM: ${ok} finished OK, ${unavailable.length} UNAVAILABLE, exit ${code} after ${elapsed.toFixed(0)} ms (grace ${graceMs} ms)`);
  } finally {
    health.close();
    client.close();
    if (s.child.exitCode === null) await s.stop('SIGKILL');
  }
});
