// Shared-memory descriptors through the real server and a real grpc-js client: the same results bit for bit as
// bytes on the wire, and every bad descriptor refused with the right status naming the field while good
// requests running beside it are unaffected. Segments are real files in /dev/shm, unlinked right after
// registration as the Python client does.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, symlinkSync, unlinkSync, writeSync } from 'node:fs';
import { test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import type { ScoreRequest } from '../../src/generated/mechreward/v1/ScoreRequest.js';
import type { ScoreResponse__Output } from '../../src/generated/mechreward/v1/ScoreResponse.js';
import type { RunningServer } from '../../src/server.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, httpUrl, startTestServer } from '../helpers/server.js';

const PACK = 'topk-saelens'; // d_model 64
const D = 64;
const NONCE_BYTES = 16;

interface Outcome {
  ok: boolean;
  response?: ScoreResponse__Output;
  code?: grpc.status;
  details?: string;
}

function meta(clientId: string | undefined, token?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (clientId !== undefined) m.set('x-mechreward-client-id', clientId);
  if (token) m.set('authorization', `Bearer ${token}`);
  return m;
}

function call<Req>(fn: (req: Req, m: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => unknown, req: Req, m: grpc.Metadata): Promise<Outcome> {
  return new Promise((resolve) => {
    fn(req, m, { deadline: Date.now() + 30_000 }, (err, res) => resolve(err ? { ok: false, code: err.code, details: err.details } : { ok: true, response: res as ScoreResponse__Output }));
  });
}

const scoreCall = (c: RewardServiceClient, req: ScoreRequest, m: grpc.Metadata) => call(c.Score.bind(c) as never, req, m);
const register = (c: RewardServiceClient, req: object, m: grpc.Metadata) => call(c.RegisterSharedMemory.bind(c) as never, req, m);
const unregister = (c: RewardServiceClient, name: string, m: grpc.Metadata) => call(c.UnregisterSharedMemory.bind(c) as never, { name }, m);

/** A segment in /dev/shm with the nonce at offset 0 and `payload` after it; the caller unlinks it. */
function makeSegment(payload: Buffer, nonce = randomBytes(NONCE_BYTES)): { key: string; path: string; nonce: Buffer; size: number } {
  const key = `mechreward-test-${randomBytes(6).toString('hex')}`;
  const path = `/dev/shm/${key}`;
  const fd = openSync(path, 'wx', 0o600);
  writeSync(fd, nonce, 0, nonce.length, 0);
  writeSync(fd, payload, 0, payload.length, NONCE_BYTES);
  closeSync(fd);
  return { key, path, nonce, size: NONCE_BYTES + payload.length };
}

/** Deterministic activations of `tokens` x D in one wire dtype, as little-endian bytes. */
function activations(tokens: number, dtype: 'DTYPE_F32' | 'DTYPE_F16' | 'DTYPE_BF16', seed: number): Buffer {
  const f32 = new Float32Array(tokens * D);
  for (let i = 0; i < f32.length; i++) f32[i] = Math.sin(seed * 7.1 + i * 0.37) * 3;
  if (dtype === 'DTYPE_F32') return Buffer.from(f32.buffer);
  const out = Buffer.alloc(f32.length * 2);
  for (let i = 0; i < f32.length; i++) {
    // BF16: the top half of the float32; F16 via a tiny exact path for these moderate values.
    if (dtype === 'DTYPE_BF16') out.writeUInt16LE(new Uint32Array(new Float32Array([f32[i]!]).buffer)[0]! >>> 16, i * 2);
    else out.writeUInt16LE(toHalf(f32[i]!), i * 2);
  }
  return out;
}

function toHalf(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = (x >>> 13) & 0x3ff;
  if (exp <= 0) return sign; // flush tiny values to zero (never hit by these inputs' magnitudes at test scale)
  return sign | (exp << 10) | mant;
}

async function withServer(overrides: Record<string, unknown>, body: (s: RunningServer, c: RewardServiceClient) => Promise<void>): Promise<void> {
  const s = await startTestServer(PARITY_PACKS, overrides);
  const c = grpcClient(s.grpcPort);
  try {
    await body(s, c);
  } finally {
    c.close();
    await s.close();
  }
}

test('shm descriptors score bit for bit like bytes on the wire (f32, f16, bf16), with the segment already unlinked', async () => {
  await withServer({}, async (s, c) => {
    const me = meta('client-aaaaaaaa');
    const dtypes = ['DTYPE_F32', 'DTYPE_F16', 'DTYPE_BF16'] as const;
    const seqs = dtypes.map((dtype, i) => ({ dtype, bytes: activations(5 + i, dtype, i), num_tokens: 5 + i, score_from: i }));
    const payload = Buffer.concat(seqs.map((q) => q.bytes));
    const seg = makeSegment(payload);
    const reg = await register(c, { name: 'r1', key: seg.key, byte_size: seg.size, nonce: seg.nonce }, me);
    unlinkSync(seg.path); // as the Python client does: nothing left in /dev/shm whatever happens next
    assert.ok(reg.ok, reg.details);
    let offset = NONCE_BYTES;
    const viaShm = seqs.map((q) => {
      const ref = { region: 'r1', offset, byte_size: q.bytes.length };
      offset += q.bytes.length;
      return { dtype: q.dtype, num_tokens: q.num_tokens, score_from: q.score_from, shm: ref };
    });
    const viaBytes = seqs.map((q) => ({ dtype: q.dtype, num_tokens: q.num_tokens, score_from: q.score_from, activations: q.bytes }));
    const a = await scoreCall(c, { pack: PACK, sequences: viaShm }, me);
    const b = await scoreCall(c, { pack: PACK, sequences: viaBytes }, me);
    assert.ok(a.ok && b.ok, `${a.details} ${b.details}`);
    assert.deepEqual(a.response!.results, b.response!.results);
    // Mixed in one request: bytes and descriptors.
    const mixed = await scoreCall(c, { pack: PACK, sequences: [viaBytes[0]!, viaShm[1]!, viaBytes[2]!] }, me);
    assert.deepEqual(mixed.response!.results, b.response!.results);

    const metrics = await (await fetch(httpUrl(s, '/metrics'))).text();
    assert.match(metrics, new RegExp(`mechreward_shm_registered_bytes ${seg.size}\\b`));
    assert.match(metrics, /mechreward_shm_regions 1\b/);
    assert.ok((await unregister(c, 'r1', me)).ok);
    const gone = await scoreCall(c, { pack: PACK, sequences: viaShm }, me);
    assert.equal(gone.code, grpc.status.NOT_FOUND);
    assert.match((await (await fetch(httpUrl(s, '/metrics'))).text()), /mechreward_shm_registered_bytes 0\b/);
  });
});

test('bad shared-memory input: the right status naming the field, nothing read outside the segment, good requests beside it unaffected', async () => {
  await withServer({}, async (_s, c) => {
    const me = meta('client-owner-1');
    const other = meta('client-other-2');
    const good = activations(6, 'DTYPE_F32', 3);
    const seg = makeSegment(good);
    assert.ok((await register(c, { name: 'mine', key: seg.key, byte_size: seg.size, nonce: seg.nonce }, me)).ok);
    const ref = (r: object) => ({ pack: PACK, sequences: [{ dtype: 'DTYPE_F32' as const, num_tokens: 6, score_from: 0, shm: { region: 'mine', offset: NONCE_BYTES, byte_size: good.length, ...r } }] });
    const expected = await scoreCall(c, { pack: PACK, sequences: [{ dtype: 'DTYPE_F32', num_tokens: 6, score_from: 0, activations: good }] }, me);
    assert.ok(expected.ok);

    const wrongNonce = makeSegment(Buffer.alloc(64));
    const fifoLink = `mechreward-test-link-${randomBytes(4).toString('hex')}`;
    symlinkSync(seg.path, `/dev/shm/${fifoLink}`);
    const cases: { name: string; run: () => Promise<Outcome>; code: grpc.status; mentions: string[] }[] = [
      { name: 'unregistered region', run: () => scoreCall(c, ref({ region: 'nope' }), me), code: grpc.status.NOT_FOUND, mentions: ['MR_ERR_SHM_NOT_FOUND', 'sequences[0].shm.region'] },
      { name: "another client's region", run: () => scoreCall(c, ref({}), other), code: grpc.status.PERMISSION_DENIED, mentions: ['MR_ERR_SHM_FORBIDDEN', 'sequences[0].shm.region'] },
      { name: 'no client id', run: () => scoreCall(c, ref({}), meta(undefined)), code: grpc.status.INVALID_ARGUMENT, mentions: ['x-mechreward-client-id'] },
      { name: 'past the end', run: () => scoreCall(c, ref({ offset: seg.size - 8 }), me), code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].shm', 'runs past the end'] },
      { name: 'huge byte_size', run: () => scoreCall(c, ref({ byte_size: '18446744073709551615' }), me), code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].shm.byte_size'] },
      { name: 'huge offset', run: () => scoreCall(c, ref({ offset: '9007199254740000' }), me), code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].shm'] },
      { name: 'shorter than the declared shape', run: () => scoreCall(c, ref({ byte_size: good.length - 4 }), me), code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0].activations', 'expected 1536 bytes'] },
      { name: 'activations and shm both set', run: () => scoreCall(c, { pack: PACK, sequences: [{ ...ref({}).sequences[0]!, activations: good }] }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['sequences[0]', 'not both'] },
      { name: 'path-like key (..)', run: () => register(c, { name: 'x', key: '../etc/passwd', byte_size: 64, nonce: seg.nonce }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['key:'] },
      { name: 'path-like key (/)', run: () => register(c, { name: 'x', key: 'mechreward-a/b', byte_size: 64, nonce: seg.nonce }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['key:'] },
      { name: 'key without the prefix', run: () => register(c, { name: 'x', key: 'sem.something', byte_size: 64, nonce: seg.nonce }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['key:', 'mechreward-'] },
      { name: 'path-like name', run: () => register(c, { name: '../x', key: seg.key, byte_size: 64, nonce: seg.nonce }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['name:'] },
      { name: 'register huge byte_size', run: () => register(c, { name: 'x', key: seg.key, byte_size: '18446744073709551615', nonce: seg.nonce }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['byte_size:'] },
      { name: 'register beyond the segment', run: () => register(c, { name: 'x', key: seg.key, byte_size: seg.size + 1, nonce: seg.nonce }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['byte_size:', 'exceeds'] },
      { name: 'short nonce', run: () => register(c, { name: 'x', key: seg.key, byte_size: seg.size, nonce: Buffer.alloc(4) }, me), code: grpc.status.INVALID_ARGUMENT, mentions: ['nonce:'] },
      { name: 'nonce mismatch', run: () => register(c, { name: 'x', key: wrongNonce.key, byte_size: wrongNonce.size, nonce: randomBytes(NONCE_BYTES) }, me), code: grpc.status.FAILED_PRECONDITION, mentions: ['MR_ERR_SHM_UNAVAILABLE', 'nonce:'] },
      { name: 'no such segment', run: () => register(c, { name: 'x', key: 'mechreward-does-not-exist', byte_size: 64, nonce: seg.nonce }, me), code: grpc.status.FAILED_PRECONDITION, mentions: ['MR_ERR_SHM_UNAVAILABLE', 'not co-located'] },
      { name: 'symlink', run: () => register(c, { name: 'x', key: fifoLink, byte_size: 64, nonce: seg.nonce }, me), code: grpc.status.FAILED_PRECONDITION, mentions: ['symbolic link'] },
      { name: "taking another client's name", run: () => register(c, { name: 'mine', key: seg.key, byte_size: seg.size, nonce: seg.nonce }, other), code: grpc.status.PERMISSION_DENIED, mentions: ['MR_ERR_SHM_FORBIDDEN', 'name:'] },
      { name: "unregistering another client's region", run: () => unregister(c, 'mine', other), code: grpc.status.PERMISSION_DENIED, mentions: ['name:'] },
    ];
    try {
      // Every bad call runs while good requests are in flight on the same server.
      const goods = Array.from({ length: 8 }, () => scoreCall(c, ref({}), me));
      for (const k of cases) {
        const out = await k.run();
        assert.equal(out.ok, false, k.name);
        assert.equal(out.code, k.code, `${k.name}: ${out.details}`);
        for (const m of k.mentions) assert.ok(out.details!.includes(m), `${k.name}: ${out.details} should mention ${m}`);
      }
      for (const g of await Promise.all(goods)) assert.deepEqual(g.response?.results, expected.response!.results);

      // Truncated mid-request by its owner: the server's read comes up short and says so; nothing past the end.
      ftruncateSync(openSync(seg.path, 'r+'), NONCE_BYTES + 100);
      const cut = await scoreCall(c, ref({}), me);
      assert.equal(cut.code, grpc.status.INVALID_ARGUMENT);
      assert.match(cut.details!, /sequences\[0\]\.shm: region "mine" ended after 116 bytes.*truncated/);
      const after = await scoreCall(c, { pack: PACK, sequences: [{ dtype: 'DTYPE_F32', num_tokens: 6, score_from: 0, activations: good }] }, me);
      assert.deepEqual(after.response?.results, expected.response!.results, 'the server keeps serving');
    } finally {
      for (const p of [seg.path, wrongNonce.path, `/dev/shm/${fifoLink}`]) unlinkSync(p);
    }
  });
});

test('--shm false refuses registration with FAILED_PRECONDITION; --auth-token covers the register RPCs; idle leases expire', async () => {
  await withServer({ shm: false }, async (_s, c) => {
    const seg = makeSegment(Buffer.alloc(64));
    try {
      const out = await register(c, { name: 'r', key: seg.key, byte_size: seg.size, nonce: seg.nonce }, meta('client-cccccccc'));
      assert.equal(out.code, grpc.status.FAILED_PRECONDITION);
      assert.match(out.details!, /MR_ERR_SHM_UNAVAILABLE: shared memory is off/);
    } finally {
      unlinkSync(seg.path);
    }
  });
  await withServer({ authToken: 'tok-shm', shmLeaseMs: 1000 }, async (_s, c) => {
    const seg = makeSegment(activations(2, 'DTYPE_F32', 1));
    try {
      const req = { name: 'r', key: seg.key, byte_size: seg.size, nonce: seg.nonce };
      assert.equal((await register(c, req, meta('client-dddddddd'))).code, grpc.status.UNAUTHENTICATED);
      assert.equal((await unregister(c, 'r', meta('client-dddddddd'))).code, grpc.status.UNAUTHENTICATED);
      assert.ok((await register(c, req, meta('client-dddddddd', 'tok-shm'))).ok);
    } finally {
      unlinkSync(seg.path);
    }
    const seq = { dtype: 'DTYPE_F32' as const, num_tokens: 2, score_from: 0, shm: { region: 'r', offset: NONCE_BYTES, byte_size: 2 * D * 4 } };
    assert.ok((await scoreCall(c, { pack: PACK, sequences: [seq] }, meta('client-dddddddd', 'tok-shm'))).ok);
    // Idle past the lease (1 s; the sweep runs every 250 ms): the region is closed and says so.
    await new Promise((r) => setTimeout(r, 1600));
    const expired = await scoreCall(c, { pack: PACK, sequences: [seq] }, meta('client-dddddddd', 'tok-shm'));
    assert.equal(expired.code, grpc.status.NOT_FOUND);
    assert.match(expired.details!, /MR_ERR_SHM_NOT_FOUND: sequences\[0\]\.shm\.region: .*lease/);
  });
});
