import assert from 'node:assert/strict';
import { test } from 'node:test';

import { pool } from '../../src/core/pooling.js';
import { firstNonFinite, halfToFloat, widenToFloat32 } from '../../src/numerics/widen.js';

test('f16 widening is exact on known bit patterns', () => {
  const cases: Array<[number, number]> = [
    [0x0000, 0], [0x3c00, 1], [0xc000, -2], [0x7bff, 65504], [0x0001, 2 ** -24], [0x03ff, 1023 * 2 ** -24],
    [0x0400, 2 ** -14], [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity],
  ];
  for (const [bits, value] of cases) assert.equal(halfToFloat(bits), value, `0x${bits.toString(16)}`);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  const bytes = new Uint8Array(cases.length * 2 + 1).subarray(1); // deliberately unaligned
  cases.forEach(([bits], i) => new DataView(bytes.buffer, bytes.byteOffset).setUint16(2 * i, bits, true));
  assert.deepEqual(Array.from(widenToFloat32(bytes, 'F16')), cases.map(([, v]) => v));
});

test('bf16 widening keeps the top 16 bits of float32 exactly', () => {
  const values = [1, -2.5, 3.140625, 1e-30, -65536, 3.3895313892515355e38];
  const bytes = new Uint8Array(values.length * 2 + 3).subarray(3); // unaligned
  const f32 = new Float32Array(values);
  const u32 = new Uint32Array(f32.buffer);
  u32.forEach((bits, i) => new DataView(bytes.buffer, bytes.byteOffset).setUint16(2 * i, bits >>> 16, true));
  const widened = widenToFloat32(bytes, 'BF16');
  values.forEach((v, i) => assert.equal(widened[i], Math.fround(new Float32Array(new Uint32Array([(u32[i]! >>> 16) << 16]).buffer)[0]!), String(v)));
  assert.equal(widened[0], 1);
  assert.equal(widened[1], -2.5);
});

test('f32 widening copies from unaligned buffers', () => {
  const src = new Float32Array([1.5, -2, 3e-7]);
  const bytes = new Uint8Array(13).subarray(1);
  bytes.set(new Uint8Array(src.buffer));
  assert.deepEqual(Array.from(widenToFloat32(bytes, 'F32')), Array.from(src));
});

test('firstNonFinite finds NaN and infinities', () => {
  assert.equal(firstNonFinite(new Float32Array([1, 2, 3])), -1);
  assert.equal(firstNonFinite(new Float32Array([1, NaN, Infinity])), 1);
  assert.equal(firstNonFinite(new Float32Array([1, 2, -Infinity])), 2);
  assert.equal(firstNonFinite(new Float32Array([NaN, 2, 3]), 1), -1);
});

test('pooling over response tokens', () => {
  const v = [100, 100, 1, 2, 3, 6];
  assert.equal(pool(v, 2, 6, { method: 'mean' }), 3);
  assert.equal(pool(v, 2, 6, { method: 'sum' }), 12);
  assert.equal(pool(v, 2, 6, { method: 'max' }), 6);
  assert.equal(pool(v, 2, 6, { method: 'last_k', k: 2 }), 4.5);
  assert.equal(pool(v, 4, 6, { method: 'last_k', k: 10 }), 4.5, 'last_k never reaches into the prompt');
  assert.equal(pool([-1, -3], 0, 2, { method: 'max' }), -1);
});
