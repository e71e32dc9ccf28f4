// Bad input gets a clear error, the right status, and changes nothing else: after every bad request, and
// while bad requests are in flight, a good request gets the exact same answer as before. Writes the table
// of what was tried to test-reports/bad-input.md.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import { writeBigPack } from '../helpers/bigpack.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const PACK = 'topk-saelens';
const D_MODEL = 64;
const MAX_TOKENS = 4096;
const MAX_MESSAGE = 1024 * 1024;

let server: RunningServer;
let client: RewardServiceClient;

function rows(numTokens: number, seed = 1): Float32Array {
  const out = new Float32Array(numTokens * D_MODEL);
  for (let i = 0; i < out.length; i++) out[i] = Math.sin(seed * 12.9898 + i * 78.233) * 3;
  return out;
}

function f32Bytes(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

const goodRequest: ScoreRequest = { pack: PACK, sequences: [{ activations: f32Bytes(rows(12)), dtype: 'DTYPE_F32', num_tokens: 12, score_from: 3 }] };
let goodAnswer: unknown;

before(async () => {
  server = await startTestServer(PARITY_PACKS, { maxTokensPerRequest: MAX_TOKENS, maxMessageBytes: MAX_MESSAGE, maxInflight: 64 });
  client = grpcClient(server.grpcPort);
  const first = await score(client, goodRequest);
  assert.ok(first.ok, first.details);
  goodAnswer = first.response;
});

after(async () => {
  client.close();
  await server.close();
});

interface BadCase {
  name: string;
  request: ScoreRequest;
  code: grpc.status;
  /** Substrings the error message must contain (the field it names, and what was wrong). */
  mentions: string[];
}

const nanRows = rows(6);
nanRows[2 * D_MODEL + 5] = Number.NaN;
const infHalf = Buffer.alloc(6 * D_MODEL * 2); // all +0.0 in f16 ...
infHalf.writeUInt16LE(0x7c00, 2 * (4 * D_MODEL + 1)); // ... except +Inf at token 4, dim 1

const badCases: BadCase[] = [
  { name: 'byte length one short', request: { pack: PACK, sequences: [{ activations: f32Bytes(rows(6)).subarray(1), dtype: 'DTYPE_F32', num_tokens: 6, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].activations', 'expected 1536 bytes', 'got 1535'] },
  { name: 'wrong d_model (32 instead of 64)', request: { pack: PACK, sequences: [{ activations: f32Bytes(new Float32Array(6 * 32)), dtype: 'DTYPE_F32', num_tokens: 6, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].activations', 'd_model 32', 'expects d_model 64'] },
  { name: 'NaN in activations', request: { pack: PACK, sequences: [{ activations: f32Bytes(nanRows), dtype: 'DTYPE_F32', num_tokens: 6, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].activations', 'NaN at token 2, dim 5'] },
  { name: '+Inf in f16 activations', request: { pack: PACK, sequences: [{ activations: infHalf, dtype: 'DTYPE_F16', num_tokens: 6, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].activations', 'Infinity at token 4, dim 1'] },
  { name: 'NaN in a prompt token', request: { pack: PACK, sequences: [{ activations: f32Bytes(nanRows), dtype: 'DTYPE_F32', num_tokens: 6, score_from: 4 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].activations', 'NaN at token 2'] },
  { name: 'dtype unspecified', request: { pack: PACK, sequences: [{ activations: f32Bytes(rows(6)), dtype: 'DTYPE_UNSPECIFIED', num_tokens: 6, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].dtype', 'DTYPE_UNSPECIFIED'] },
  { name: 'unknown dtype number 7', request: { pack: PACK, sequences: [{ activations: f32Bytes(rows(6)), dtype: 7 as unknown as 'DTYPE_F32', num_tokens: 6, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].dtype', '7'] },
  { name: 'score_from past the end', request: { pack: PACK, sequences: [{ activations: f32Bytes(rows(6)), dtype: 'DTYPE_F32', num_tokens: 6, score_from: 9 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].score_from', '9'] },
  { name: 'score_from == num_tokens (no response)', request: { pack: PACK, sequences: [{ activations: f32Bytes(rows(6)), dtype: 'DTYPE_F32', num_tokens: 6, score_from: 6 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].score_from', 'no response token'] },
  { name: 'num_tokens 0', request: { pack: PACK, sequences: [{ activations: Buffer.alloc(0), dtype: 'DTYPE_F32', num_tokens: 0, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].num_tokens'] },
  { name: 'unknown pack', request: { pack: 'no-such-pack', sequences: goodRequest.sequences }, code: grpc.status.NOT_FOUND, mentions: ['pack', 'no-such-pack', PACK] },
  { name: 'no sequences', request: { pack: PACK, sequences: [] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences', 'at least one'] },
  { name: 'second of two sequences bad', request: { pack: PACK, sequences: [goodRequest.sequences![0]!, { activations: f32Bytes(rows(5)), dtype: 'DTYPE_BF16', num_tokens: 5, score_from: 0 }] }, code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[1].activations', 'expected 640 bytes'] },
  { name: `more than max_tokens_per_request (${MAX_TOKENS})`, request: { pack: PACK, sequences: Array.from({ length: 5 }, () => ({ activations: Buffer.alloc(1000 * D_MODEL * 2), dtype: 'DTYPE_BF16' as const, num_tokens: 1000, score_from: 0 })) }, code: grpc.status.RESOURCE_EXHAUSTED, mentions: ['sequences', '5000 tokens', 'max_tokens_per_request 4096'] },
  { name: `message over max_message_bytes (${MAX_MESSAGE})`, request: { pack: PACK, sequences: [{ activations: Buffer.alloc(MAX_MESSAGE + 64), dtype: 'DTYPE_F32', num_tokens: 1, score_from: 0 }] }, code: grpc.status.RESOURCE_EXHAUSTED, mentions: ['larger than max'] },
];

const report: string[] = ['| # | bad input | gRPC status | message (abridged) | good request after it |', '|---|---|---|---|---|'];

test('every bad input gets the right status and a message naming the field; the server keeps serving', async () => {
  let i = 0;
  for (const c of badCases) {
    i++;
    const out = await score(client, c.request);
    assert.equal(out.ok, false, `${c.name}: expected an error`);
    assert.equal(out.code, c.code, `${c.name}: got ${grpc.status[out.code!]} (${out.details})`);
    for (const m of c.mentions) assert.ok(out.details!.includes(m), `${c.name}: message ${JSON.stringify(out.details)} should mention ${JSON.stringify(m)}`);
    const good = await score(client, goodRequest);
    assert.ok(good.ok, `${c.name}: good request after it failed: ${good.details}`);
    assert.deepEqual(good.response, goodAnswer, `${c.name}: good request after it got a different answer`);
    report.push(`| ${i} | ${c.name} | ${grpc.status[out.code!]} | ${out.details!.slice(0, 170).replace(/\|/g, '/')} | OK, identical |`);
  }
});

test('deadline already passed → DEADLINE_EXCEEDED, server unaffected', async () => {
  const out = await score(client, goodRequest, 0);
  assert.equal(out.code, grpc.status.DEADLINE_EXCEEDED);
  report.push(`| ${badCases.length + 1} | deadline already passed | ${grpc.status[out.code!]} | ${out.details} | OK, identical |`);
  const good = await score(client, goodRequest);
  assert.deepEqual(good.response, goodAnswer);
});

test('bad requests interleaved with good ones never disturb the good ones', async () => {
  const calls = Array.from({ length: 60 }, (_, j) => (j % 3 === 0 ? score(client, goodRequest) : score(client, badCases[j % badCases.length]!.request)));
  const outcomes = await Promise.all(calls);
  outcomes.forEach((o, j) => {
    if (j % 3 === 0) {
      assert.ok(o.ok, o.details);
      assert.deepEqual(o.response, goodAnswer);
    } else {
      assert.equal(o.code, badCases[j % badCases.length]!.code);
    }
  });
});

test('over max_inflight: clean RESOURCE_EXHAUSTED, counted exactly once each, nothing lost', async () => {
  // A pack large enough that one request keeps the engine busy while the others arrive.
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-inflight-'));
  cpSync(path.join(PARITY_PACKS, PACK), path.join(root, PACK), { recursive: true });
  writeBigPack(root);
  const small = await startTestServer(root, { maxInflight: 1 });
  const c = grpcClient(small.grpcPort);
  try {
    const bigRows = new Float32Array(2048 * 512).map((_, i) => Math.sin(i));
    const big: ScoreRequest = { pack: 'big', sequences: [{ activations: f32Bytes(bigRows), dtype: 'DTYPE_F32', num_tokens: 2048, score_from: 0 }] };
    // prom-client's get() hands out live objects: read the number out at once.
    const overloadedCount = async () => (await small.service.metrics.failures.get()).values.find((v) => v.labels.reason === 'overloaded')?.value ?? 0;
    const before = await overloadedCount();
    const outcomes = await Promise.all(Array.from({ length: 16 }, () => score(c, big)));
    const ok = outcomes.filter((o) => o.ok).length;
    const rejected = outcomes.filter((o) => o.code === grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(ok + rejected.length, 16, `unexpected statuses: ${outcomes.map((o) => o.code).join(',')}`);
    assert.ok(ok >= 1 && rejected.length >= 1, `ok=${ok} rejected=${rejected.length}`);
    assert.ok(rejected.every((o) => o.details!.includes('in-flight')));
    assert.equal((await overloadedCount()) - before, rejected.length);
    report.push(`| ${badCases.length + 2} | 16 concurrent 2048-token requests (512x16384 SAE), max_inflight 1 | RESOURCE_EXHAUSTED x${rejected.length}, OK x${ok} | ${rejected[0]!.details!.slice(0, 90)} | OK |`);
    const good = await score(c, goodRequest);
    assert.deepEqual(good.response, goodAnswer);
  } finally {
    c.close();
    await small.close();
    rmSync(root, { recursive: true, force: true });
  }
});

test('HTTP: bad bodies map through the same catalogue', async () => {
  const post = (body: string, type = 'application/json') => fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': type }, body });
  const cases: Array<[string, Response, number, string]> = [
    ['malformed JSON', await post('{"pack": '), 400, 'MR_ERR_MALFORMED_BODY'],
    ['unknown pack', await post(JSON.stringify({ pack: 'nope', sequences: [] })), 404, 'MR_ERR_PACK_NOT_FOUND'],
    ['bad base64 length', await post(JSON.stringify({ pack: PACK, sequences: [{ activations: 'AAAA', dtype: 'f32', num_tokens: 2, score_from: 0 }] })), 400, 'MR_ERR_INVALID_TENSOR'],
    ['malformed msgpack', await post('\xc1\xc1', 'application/msgpack'), 400, 'MR_ERR_MALFORMED_BODY'],
  ];
  for (const [name, res, status, code] of cases) {
    assert.equal(res.status, status, name);
    const body = (await res.json()) as { code: string; error: string };
    assert.equal(body.code, code, name);
    report.push(`| HTTP | ${name} | ${res.status} | ${body.error.slice(0, 100)} | OK |`);
  }
  const health = await fetch(httpUrl(server, '/readyz'));
  assert.equal(health.status, 200);
  const dir = path.resolve('test-reports');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'bad-input.md'), `${report.join('\n')}\n`);
});
