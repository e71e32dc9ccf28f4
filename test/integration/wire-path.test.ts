// The Score hot path (core/decode.ts → shared slabs → the worker's widen-and-check pass): the same values sent
// as f32, f16 and bf16 give the same float32 bits; requests split into several engine chunks and merged with
// other requests' chunks give the same bits as alone; NaN/Inf anywhere (a later chunk, a later sequence's
// prompt row, either half of a 32-bit word) is refused with the sequence, token and dim, while concurrent
// requests sharing the engine runs are answered unchanged.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';

import type { RunningServer } from '../../src/server.js';
import type { RewardServiceClient } from '../../src/generated/mechreward/v1/RewardService.js';
import { PARITY_PACKS } from '../helpers/fixtures.js';
import { grpcClient, score, startTestServer } from '../helpers/server.js';

const PACK = 'direction-f32';
const D = 64;

let server: RunningServer;
let client: RewardServiceClient;

before(async () => {
  // 8-row engine chunks: a 30-token sequence spans four chunks, and concurrent requests share runs.
  server = await startTestServer(PARITY_PACKS, { maxBatchTokens: 8 });
  client = grpcClient(server.grpcPort);
});

after(async () => {
  client.close();
  await server.close();
});

/** Values exact in f16 and bf16 alike: small integers times a power of two, seeded. */
function exactValues(tokens: number, seed: number): Float32Array {
  const out = new Float32Array(tokens * D);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (((s >>> 16) % 255) - 127) / 64;
  }
  return out;
}

const f32Bytes = (v: Float32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
function bf16Bytes(v: Float32Array): Buffer {
  const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
  return Buffer.from(Uint16Array.from(bits, (b) => b >>> 16).buffer);
}
function f16Bytes(v: Float32Array): Buffer {
  // Every value is k/64 with |k| < 128: exact in binary16. Encode by hand (sign, exponent, 10-bit fraction).
  return Buffer.from(
    Uint16Array.from(v, (x) => {
      if (x === 0) return Object.is(x, -0) ? 0x8000 : 0;
      if (Number.isNaN(x)) return 0x7e00;
      const sign = x < 0 ? 0x8000 : 0;
      if (!Number.isFinite(x)) return sign | 0x7c00;
      const e = Math.floor(Math.log2(Math.abs(x)));
      return sign | ((e + 15) << 10) | Math.round((Math.abs(x) / 2 ** e - 1) * 1024);
    }).buffer,
  );
}

const bits = (r: number[]) => Buffer.from(new Float32Array(r).buffer).toString('hex');

function request(values: Float32Array[], dtype: 'DTYPE_F32' | 'DTYPE_F16' | 'DTYPE_BF16', scoreFrom: number[]) {
  const encode = dtype === 'DTYPE_F32' ? f32Bytes : dtype === 'DTYPE_F16' ? f16Bytes : bf16Bytes;
  return { pack: PACK, sequences: values.map((v, i) => ({ activations: encode(v), dtype, num_tokens: v.length / D, score_from: scoreFrom[i]! })) };
}

const seqs = [exactValues(30, 1), exactValues(3, 2), exactValues(17, 3)];
const froms = [5, 0, 16];

test('f32, f16 and bf16 bytes of the same values give the same reward bits, over several chunks', async () => {
  const answers = await Promise.all((['DTYPE_F32', 'DTYPE_F16', 'DTYPE_BF16'] as const).map((dtype) => score(client, request(seqs, dtype, froms))));
  for (const a of answers) assert.ok(a.ok, a.details);
  const [f32, f16, bf16] = answers.map((a) => a.response!.results.map((r) => bits(r.token_rewards)));
  assert.deepEqual(f16, f32);
  assert.deepEqual(bf16, f32);
  const first = answers[0]!.response!.results[0]!;
  assert.equal(first.token_rewards.length, 30);
  assert.deepEqual(first.token_rewards.slice(0, 5), [0, 0, 0, 0, 0], 'prompt tokens get reward 0');
  assert.ok(first.token_rewards.slice(5).every((r) => r !== 0 && Number.isFinite(r)));
});

test('alone or merged with concurrent requests into shared engine runs: the same bits', async () => {
  const alone = await score(client, request(seqs, 'DTYPE_BF16', froms));
  const together = await Promise.all(Array.from({ length: 6 }, (_, k) => score(client, request(k % 2 ? [seqs[1]!, seqs[2]!] : seqs, 'DTYPE_BF16', k % 2 ? [0, 16] : froms))));
  for (const [k, t] of together.entries()) {
    assert.ok(t.ok, t.details);
    const expected = k % 2 ? alone.response!.results.slice(1) : alone.response!.results;
    assert.deepEqual(t.response!.results.map((r) => bits(r.token_rewards)), expected.map((r) => bits(r.token_rewards)));
  }
});

test('NaN or Inf in a later chunk, a later prompt, either half of a word: refused with sequence, token and dim; neighbours unaffected', async () => {
  const cases: Array<{ seq: number; token: number; dim: number; value: number; dtype: 'DTYPE_F32' | 'DTYPE_F16' | 'DTYPE_BF16'; shown: string }> = [
    { seq: 0, token: 27, dim: 3, value: Number.NaN, dtype: 'DTYPE_BF16', shown: 'NaN' }, // fourth chunk, odd element of its word
    { seq: 2, token: 4, dim: 0, value: Number.POSITIVE_INFINITY, dtype: 'DTYPE_F16', shown: 'Infinity' }, // prompt row of the third sequence
    { seq: 1, token: 2, dim: 63, value: Number.NEGATIVE_INFINITY, dtype: 'DTYPE_F32', shown: '-Infinity' }, // last element of a sequence
  ];
  const good = request(seqs, 'DTYPE_BF16', froms);
  const expected = (await score(client, good)).response!.results.map((r) => bits(r.token_rewards));
  for (const c of cases) {
    const poisoned = seqs.map((v) => v.slice());
    poisoned[c.seq]![c.token * D + c.dim] = c.value;
    const [bad, ok1, ok2] = await Promise.all([score(client, request(poisoned, c.dtype, froms)), score(client, good), score(client, good)]);
    assert.equal(bad.ok, false, `${c.dtype} ${c.shown} was accepted`);
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(bad.details, `MR_ERR_NONFINITE_INPUT: sequences[${c.seq}].activations: ${c.shown} at token ${c.token}, dim ${c.dim}; activations must be finite`);
    for (const ok of [ok1, ok2]) {
      assert.ok(ok.ok, ok.details);
      assert.deepEqual(ok.response!.results.map((r) => bits(r.token_rewards)), expected);
    }
  }
});

test('a pack that normalises by the norm refuses an all-zero response token (±0, any dtype), not an all-zero prompt token', async () => {
  const rows = [exactValues(4, 7), exactValues(5, 8)];
  const zeroResponse = rows.map((v) => v.slice());
  zeroResponse[1]!.fill(-0, 3 * D, 4 * D); // token 3 of sequence 1: only sign bits set
  const zeroPrompt = rows.map((v) => v.slice());
  zeroPrompt[0]!.fill(0, 0, D); // token 0 of sequence 0 is prompt (score_from 1)
  for (const dtype of ['DTYPE_F32', 'DTYPE_F16', 'DTYPE_BF16'] as const) {
    const bad = await score(client, { ...request(zeroResponse, dtype, [1, 1]), pack: 'relu-saelens' });
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT, dtype);
    assert.equal(bad.details, 'MR_ERR_INVALID_TENSOR: sequences[1].activations: token 3 is all zeros; this pack normalises each token by its norm');
    const ok = await score(client, { ...request(zeroPrompt, dtype, [1, 1]), pack: 'relu-saelens' });
    assert.ok(ok.ok, `${dtype}: ${ok.details}`);
  }
});
