// The running server through its real interfaces: gRPC health, ListPacks, GetInfo, HTTP health/readiness,
// metrics, JSON and msgpack scoring, a responsive event loop during a large batch, and graceful shutdown.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { pack as msgpackEncode, unpack as msgpackDecode } from 'msgpackr';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ListPacksResponse__Output } from '../../src/generated/mechreward/v1/ListPacksResponse.js';
import type { GetInfoResponse__Output } from '../../src/generated/mechreward/v1/GetInfoResponse.js';
import { writeBigPack } from '../helpers/bigpack.js';
import { PARITY_DIR, PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';


let root: string;
let server: RunningServer;
let client: RewardServiceClient;

before(async () => {
  root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-server-'));
  cpSync(path.join(PARITY_PACKS, 'topk-saelens'), path.join(root, 'topk-saelens'), { recursive: true });
  cpSync(path.join(PARITY_PACKS, 'relu-saelens'), path.join(root, 'relu-saelens'), { recursive: true });
  writeBigPack(root);
  server = await startTestServer(root);
  client = grpcClient(server.grpcPort);
});

after(async () => {
  client.close();
  await server.close();
  rmSync(root, { recursive: true, force: true });
});

function healthCheck(port: number, serviceName: string): Promise<{ status?: string; code?: grpc.status }> {
  const Client = grpc.makeGenericClientConstructor(healthService, 'Health');
  const c = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
    Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): void;
    close(): void;
  };
  return new Promise((resolve) => {
    c.Check({ service: serviceName }, (err, res) => {
      c.close();
      resolve(err ? { code: err.code } : { status: res!.status });
    });
  });
}

test('gRPC health: SERVING for "" and mechreward.v1.RewardService, NOT_FOUND for others', async () => {
  assert.equal((await healthCheck(server.grpcPort, '')).status, 'SERVING');
  assert.equal((await healthCheck(server.grpcPort, 'mechreward.v1.RewardService')).status, 'SERVING');
  assert.equal((await healthCheck(server.grpcPort, 'nope')).code, grpc.status.NOT_FOUND);
});

test('ListPacks describes each pack: shapes, architecture, encode mode, features, validation', async () => {
  const res = await new Promise<ListPacksResponse__Output>((resolve, reject) => client.ListPacks({}, (err, r) => (err ? reject(err) : resolve(r!))));
  const byName = new Map(res.packs.map((p) => [p.name, p]));
  assert.deepEqual([...byName.keys()].sort(), ['big', 'relu-saelens', 'topk-saelens']);
  const topk = byName.get('topk-saelens')!;
  assert.equal(topk.d_model, 64);
  assert.equal(topk.d_sae, 512);
  assert.equal(topk.k, 16);
  assert.equal(topk.architecture, 'topk');
  assert.equal(topk.encode_mode, 'topk');
  assert.equal(topk.layer, 3);
  assert.ok(topk.feature_count > 0);
  assert.ok(topk.canaries.length > 0);
  const relu = byName.get('relu-saelens')!;
  assert.equal(relu.architecture, 'relu');
  assert.equal(relu.schema, 'catalog-a');
  assert.equal(relu.k, 0);
  assert.equal(relu.validation!.present, false);
});

test('GetInfo and /info report version and limits', async () => {
  const info = await new Promise<GetInfoResponse__Output>((resolve, reject) => client.GetInfo({}, (err, r) => (err ? reject(err) : resolve(r!))));
  assert.equal(info.version, JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version);
  assert.equal(info.onnxruntime_version, '1.30.0');
  assert.equal(info.max_inflight, 64);
  const http = (await (await fetch(httpUrl(server, '/info'))).json()) as { max_batch_tokens: number; packs: string[] };
  assert.equal(http.max_batch_tokens, info.max_batch_tokens);
  assert.deepEqual(http.packs.sort(), ['big', 'relu-saelens', 'topk-saelens']);
});

test('HTTP /healthz and /readyz', async () => {
  const live = await fetch(httpUrl(server, '/healthz'));
  assert.equal(live.status, 200);
  const ready = await fetch(httpUrl(server, '/readyz'));
  assert.equal(ready.status, 200);
  assert.equal(((await ready.json()) as { status: string }).status, 'ready');
});

test('HTTP JSON and msgpack scoring equal gRPC scoring', async () => {
  const cases = JSON.parse(readFileSync(path.join(PARITY_DIR, 'cases.json'), 'utf8')).cases as Array<{ pack: string; dtype: string; sequences: Array<{ file: string; num_tokens: number; score_from: number }> }>;
  const c = cases.find((x) => x.pack === 'topk-saelens' && x.dtype === 'f16')!;
  const seqs = c.sequences.map((s) => ({ activations: readFileSync(path.join(PARITY_DIR, s.file)), num_tokens: s.num_tokens, score_from: s.score_from }));
  const viaGrpc = await score(client, { pack: c.pack, sequences: seqs.map((s) => ({ ...s, dtype: 'DTYPE_F16' })) });
  assert.ok(viaGrpc.ok, viaGrpc.details);
  const json = await fetch(httpUrl(server, '/v1/score'), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ pack: c.pack, sequences: seqs.map((s) => ({ ...s, activations: s.activations.toString('base64'), dtype: 'f16' })) }),
  });
  assert.equal(json.status, 200);
  assert.ok(Number(json.headers.get('x-compute-tokens')) > 0);
  const jsonBody = (await json.json()) as { results: Array<{ token_rewards: number[]; reward: number }> };
  const mp = await fetch(httpUrl(server, '/v1/score'), {
    method: 'POST',
    headers: { 'content-type': 'application/msgpack' },
    body: new Uint8Array(msgpackEncode({ pack: c.pack, sequences: seqs.map((s) => ({ ...s, dtype: "DTYPE_F16" })) })),
  });
  assert.equal(mp.status, 200);
  assert.equal(mp.headers.get('content-type'), 'application/msgpack');
  const mpBody = msgpackDecode(Buffer.from(await mp.arrayBuffer())) as typeof jsonBody;
  viaGrpc.response!.results.forEach((r, i) => {
    // gRPC carries float32; HTTP carries the same float32 values as doubles.
    assert.deepEqual(jsonBody.results[i]!.token_rewards, r.token_rewards);
    assert.deepEqual(mpBody.results[i]!.token_rewards, r.token_rewards);
    assert.equal(Math.fround(jsonBody.results[i]!.reward), r.reward);
  });
});

test('/metrics exposes the documented metric names, and counts what was scored', async () => {
  const before = await (await fetch(httpUrl(server, '/metrics'))).text();
  const seq = { activations: Buffer.alloc(10 * 64 * 4, 1), dtype: 'DTYPE_F32' as const, num_tokens: 10, score_from: 4 };
  assert.ok((await score(client, { pack: 'topk-saelens', sequences: [seq] })).ok);
  const text = await (await fetch(httpUrl(server, '/metrics'))).text();
  for (const name of [
    'mechreward_requests_total', 'mechreward_request_failures_total', 'mechreward_request_duration_seconds_bucket',
    'mechreward_queue_duration_seconds_bucket', 'mechreward_inference_duration_seconds_bucket', 'mechreward_request_tokens_bucket',
    'mechreward_tokens_scored_total', 'mechreward_queue_size', 'mechreward_inflight_requests', 'mechreward_pack_ready',
    'mechreward_build_info', 'mechreward_nonfinite_values_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds',
  ]) assert.ok(text.includes(name), `missing ${name}`);
  const tokens = (t: string) => Number(t.match(/^mechreward_tokens_scored_total\{pack="topk-saelens"\} (\d+)/m)?.[1] ?? 0);
  assert.equal(tokens(text) - tokens(before), 6);
  assert.match(text, /mechreward_requests_total\{method="Score",code="OK"\} \d+/);
  assert.match(text, /mechreward_pack_ready\{pack="big"\} 1/);
});

test('health, readiness and /metrics answer while a large batch is being scored', async () => {
  const tokens = 8192;
  const rows = new Float32Array(tokens * 512).map((_, i) => Math.sin(i));
  let scored = false;
  const big = score(client, { pack: 'big', sequences: [{ activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: tokens, score_from: 0 }] }).then((r) => {
    scored = true;
    return r;
  });
  // Wait until the engine has the job (queue or in flight), then probe.
  while (server.service.admission.current === 0 && !scored) await new Promise((r) => setTimeout(r, 1));
  const answers: string[] = [];
  for (let i = 0; i < 5; i++) {
    for (const p of ['/healthz', '/readyz', '/metrics']) {
      const res = await fetch(httpUrl(server, p));
      assert.equal(res.status, 200);
      answers.push(scored ? 'after' : 'during');
    }
    const h = await healthCheck(server.grpcPort, '');
    assert.equal(h.status, 'SERVING');
  }
  const result = await big;
  assert.ok(result.ok, result.details);
  assert.ok(answers.filter((a) => a === 'during').length >= 10, `health answered during the batch only ${answers.filter((a) => a === 'during').length} times`);
});

// The README's examples are run by examples.test.ts, against the bundled packs they read held-out data from.

test('graceful shutdown: in-flight requests finish, new ones are refused, the process stops', async () => {
  // A grace period no busy machine reaches: this test is about the unforced path (faults.test.ts forces it).
  const s = await startTestServer(root, { shutdownGraceMs: 600_000 });
  const c = grpcClient(s.grpcPort);
  const rows = new Float32Array(4096 * 512).map((_, i) => Math.cos(i));
  const inflight = Array.from({ length: 3 }, () => score(c, { pack: 'big', sequences: [{ activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32', num_tokens: 4096, score_from: 0 }] }));
  while (s.service.admission.current < 3) await new Promise((r) => setTimeout(r, 1));
  const closing = s.close();
  const late = await fetch(httpUrl(s, '/readyz')).then((r) => r.status).catch(() => 'closed');
  assert.ok(late === 503 || late === 'closed', `readyz during drain: ${late}`);
  const results = await Promise.all(inflight);
  for (const r of results) assert.ok(r.ok, r.details);
  assert.deepEqual(results[0]!.response, results[2]!.response);
  const { forced } = await closing;
  assert.equal(forced, false);
  c.close();
});
