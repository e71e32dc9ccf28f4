// Every limit with its error: message bytes, tokens per request, sequences per request (gRPC and HTTP), packs
// per server, safetensors header size, and pack names that try to leave the packs directory (gRPC pack field,
// HTTP body and HTTP path). After each refusal a good request gets the identical answer.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import type { RunningServer } from '../../src/server.js';
import { PARITY_PACKS, REPO_ROOT } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, score, startTestServer } from '../helpers/server.js';

const PACK = 'topk-saelens';
const D_MODEL = 64;
const LIMITS = { maxMessageBytes: 256 * 1024, maxTokensPerRequest: 300, maxSequencesPerRequest: 8 };

let server: RunningServer;
let client: RewardServiceClient;
let goodAnswer: unknown;

function seq(numTokens: number) {
  const rows = new Float32Array(numTokens * D_MODEL).map((_, i) => Math.cos(i * 0.1));
  return { activations: Buffer.from(rows.buffer), dtype: 'DTYPE_F32' as const, num_tokens: numTokens, score_from: 1 };
}
const good: ScoreRequest = { pack: PACK, sequences: [seq(7)] };

before(async () => {
  server = await startTestServer(PARITY_PACKS, LIMITS);
  client = grpcClient(server.grpcPort);
  goodAnswer = (await score(client, good)).response;
  assert.ok(goodAnswer);
});
after(async () => {
  client.close();
  await server.close();
});

async function stillGood(): Promise<void> {
  const out = await score(client, good);
  assert.deepEqual(out.response, goodAnswer, 'a good request after the refusal got a different answer');
}

function postJson(body: unknown): Promise<{ status: number; body: { code?: string; error?: string } }> {
  return fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code?: string; error?: string } }));
}
const jsonSeq = (n: number) => {
  const s = seq(n);
  return { ...s, activations: s.activations.toString('base64'), dtype: 'f32' };
};

test('max_message_bytes: gRPC RESOURCE_EXHAUSTED from grpc-js, HTTP 413 MR_ERR_REQUEST_TOO_LARGE', async () => {
  const big: ScoreRequest = { pack: PACK, sequences: [{ ...seq(1), activations: Buffer.alloc(LIMITS.maxMessageBytes + 1) }] };
  const g = await score(client, big);
  assert.equal(g.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(g.details!, /larger than max/);
  const h = await fetch(httpUrl(server, '/v1/score'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(LIMITS.maxMessageBytes + 1) });
  assert.equal(h.status, 413);
  assert.equal(((await h.json()) as { code: string }).code, 'MR_ERR_REQUEST_TOO_LARGE');
  await stillGood();
});

test('max_tokens_per_request: RESOURCE_EXHAUSTED / 413 naming the limit', async () => {
  const g = await score(client, { pack: PACK, sequences: [seq(200), seq(101)] });
  assert.equal(g.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(g.details!, /^MR_ERR_REQUEST_TOO_LARGE: sequences: 301 tokens in one request exceed max_tokens_per_request 300/);
  const h = await postJson({ pack: PACK, sequences: [jsonSeq(200), jsonSeq(101)] });
  assert.equal(h.status, 413);
  assert.equal(h.body.code, 'MR_ERR_REQUEST_TOO_LARGE');
  await stillGood();
});

test('max_sequences_per_request: RESOURCE_EXHAUSTED / 413 naming the limit; exactly the limit is served', async () => {
  const g = await score(client, { pack: PACK, sequences: Array.from({ length: 9 }, () => seq(2)) });
  assert.equal(g.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(g.details!, /^MR_ERR_REQUEST_TOO_LARGE: sequences: 9 sequences in one request exceed max_sequences_per_request 8/);
  const h = await postJson({ pack: PACK, sequences: Array.from({ length: 9 }, () => jsonSeq(2)) });
  assert.equal(h.status, 413);
  assert.match(h.body.error!, /max_sequences_per_request 8/);
  const atLimit = await score(client, { pack: PACK, sequences: Array.from({ length: 8 }, () => seq(2)) });
  assert.ok(atLimit.ok, atLimit.details);
  const info = (await (await fetch(httpUrl(server, '/info'))).json()) as { max_sequences_per_request: number; max_packs: number };
  assert.equal(info.max_sequences_per_request, 8);
  await stillGood();
});

test('max_packs: a packs directory holding more refuses to start (MR_ERR_CONFIG_INVALID)', async () => {
  await assert.rejects(startTestServer(PARITY_PACKS, { maxPacks: 2 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'MR_ERR_CONFIG_INVALID');
    assert.match(err.message, /holds \d+ packs, more than max_packs 2/);
    return true;
  });
});

test('safetensors header over the 16 MiB cap: the pack is refused at load, `mechreward packs` exits 1', async () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'mechreward-header-'));
  try {
    cpSync(path.join(PARITY_PACKS, PACK), path.join(root, PACK), { recursive: true });
    const file = path.join(root, PACK, 'sae', 'sae_weights.safetensors');
    const bytes = readFileSync(file);
    bytes.writeBigUInt64LE(16n * 1024n * 1024n + 1n, 0); // claims a header just over the cap
    writeFileSync(file, bytes);
    await assert.rejects(startTestServer(root), /header length 16777217 exceeds the 16777216-byte cap/);
    const run = await promisify(execFile)(process.execPath, [path.join(REPO_ROOT, 'bin/mechreward.js'), 'packs', root]).then(
      () => ({ code: 0, stdout: '' }),
      (err: { code: number; stdout: string }) => err,
    );
    assert.equal(run.code, 1);
    assert.match(run.stdout, /BROKEN topk-saelens: .*exceeds the 16777216-byte cap/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

const HOSTILE_NAMES = ['../topk-saelens', '..', '.', '%2e%2e', '..%2ftopk-saelens', '/etc/passwd', 'C:\\packs\\x', 'topk-saelens\0', 'a/b', '.hidden', 'x'.repeat(129), ''];

test('pack names that try to leave the packs directory are refused as INVALID_ARGUMENT (gRPC field, HTTP body)', async () => {
  for (const name of HOSTILE_NAMES) {
    const g = await score(client, { pack: name, sequences: good.sequences });
    assert.equal(g.code, grpc.status.INVALID_ARGUMENT, `${JSON.stringify(name)}: ${g.details}`);
    assert.match(g.details!, /^MR_ERR_INVALID_ARGUMENT: pack: .* is not a valid pack name/);
    const h = await postJson({ pack: name, sequences: [jsonSeq(3)] });
    assert.equal(h.status, 400, JSON.stringify(name));
    assert.equal(h.body.code, 'MR_ERR_INVALID_ARGUMENT');
  }
  await stillGood();
});

/** A raw HTTP request: fetch() would normalise `..` segments before sending, which is not what an attacker does. */
function rawRequest(method: string, rawPath: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) };
    const req = http.request({ host: '127.0.0.1', port: server.httpPort, path: rawPath, method, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const rawGet = (rawPath: string) => rawRequest('GET', rawPath);

test('pack names in the HTTP path (GET /v1/packs/{pack}, POST /v1/openrlhf/{pack}): encoded dots, slashes, NUL and absolute paths never reach a lookup', async () => {
  const ok = await rawGet(`/v1/packs/${PACK}`);
  assert.equal(ok.status, 200);
  assert.equal((JSON.parse(ok.body) as { name: string }).name, PACK);
  const cases: Array<[string, number]> = [
    ['/v1/packs/%2e%2e', 400],
    ['/v1/packs/%2E%2E%2Fpacks', 400],
    ['/v1/packs/..%2f..%2fetc%2fpasswd', 400],
    ['/v1/packs/%2fetc%2fpasswd', 400],
    ['/v1/packs/topk-saelens%00', 400],
    ['/v1/packs/..', 400],
    ['/v1/packs/../../etc/passwd', 404], // more path segments: no route matches
    ['/v1/packs/no-such-pack', 404],
  ];
  for (const [p, status] of cases) {
    // The OpenRLHF route checks its pack name the same way, before it needs a reader.
    if (status === 400) {
      const post = await rawRequest('POST', p.replace('/v1/packs/', '/v1/openrlhf/'), JSON.stringify({ query: ['q'], prompts: ['q'] }));
      assert.equal(post.status, 400, `POST ${p}: ${post.body}`);
      assert.equal((JSON.parse(post.body) as { code: string }).code, 'MR_ERR_INVALID_ARGUMENT');
    }
    const res = await rawGet(p);
    assert.equal(res.status, status, `${p}: ${res.body}`);
    assert.doesNotMatch(res.body, /root:|"d_model"/, `${p} leaked something`);
    if (status === 400) assert.equal((JSON.parse(res.body) as { code: string }).code, 'MR_ERR_INVALID_ARGUMENT', p);
  }
  await stillGood();
});
