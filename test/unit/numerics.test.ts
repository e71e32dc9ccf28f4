import assert from 'node:assert/strict';
import { test } from 'node:test';

import { pool } from '../../src/core/pooling.js';
import { elementValue, firstNonFinite, firstNonFiniteBits, halfToFloat, widenChecked, widenToFloat32, type WireDType } from '../../src/numerics/widen.js';

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

/** Every 16-bit pattern once (NaN, ±Inf, subnormals included), in an aligned buffer. */
function allHalfPatterns(): ArrayBuffer {
  return Uint16Array.from({ length: 65536 }, (_, i) => i).buffer;
}

test('widenChecked equals widenToFloat32 bit for bit on every bf16 and f16 pattern, and flags the first non-finite one', () => {
  for (const dtype of ['BF16', 'F16'] as const) {
    const src = allHalfPatterns();
    const mask = dtype === 'BF16' ? 0x7f80 : 0x7c00;
    const finite = Uint16Array.from(new Uint16Array(src).filter((h) => (h & mask) !== mask));
    // Finite patterns only: nothing flagged, every bit as the reference widening gives it.
    const out = new Float32Array(finite.length + 3);
    assert.equal(widenChecked(finite.buffer, 0, finite.length, dtype, out, 3), -1, dtype);
    const reference = widenToFloat32(new Uint8Array(finite.buffer), dtype);
    assert.deepEqual(new Uint32Array(out.buffer, 12), new Uint32Array(reference.buffer), dtype);
    assert.equal(firstNonFiniteBits(finite.buffer, 0, finite.length, dtype), -1);
    // All patterns: the first flagged index is the first exponent-all-ones pattern.
    const first = new Uint16Array(src).findIndex((h) => (h & mask) === mask);
    assert.equal(widenChecked(src, 0, 65536, dtype, new Float32Array(65536), 0), first, dtype);
    assert.equal(firstNonFiniteBits(src, 0, 65536, dtype), first, dtype);
  }
});

test('widenChecked finds a non-finite value in either half of a word and in an odd tail element', () => {
  const cases: Array<[WireDType, number, number]> = [['BF16', 0x7f80, 0x3f80], ['BF16', 0xffc0, 0x3f80], ['F16', 0x7c00, 0x3c00], ['F16', 0xfe00, 0x3c00]];
  for (const [dtype, badBits, oneBits] of cases) {
    for (const count of [1, 2, 5, 6]) {
      for (let at = 0; at < count; at++) {
        const src = new Uint16Array(count + 1).fill(oneBits);
        src[at] = badBits;
        const out = new Float32Array(count);
        assert.equal(widenChecked(src.buffer, 0, count, dtype, out, 0), at, `${dtype} ${badBits.toString(16)} count ${count} at ${at}`);
        assert.equal(firstNonFiniteBits(src.buffer, 0, count, dtype), at);
        if (count > 1) assert.equal(out[at === count - 1 ? 0 : count - 1], 1, 'the other elements are widened');
        const v = elementValue(src.buffer, 0, at, dtype);
        assert.ok(!Number.isFinite(v));
      }
    }
  }
  const f32 = new Float32Array([1, -0, 3.5, Number.NEGATIVE_INFINITY, Number.NaN]);
  const copy = new Float32Array(5);
  assert.equal(widenChecked(f32.buffer, 0, 3, 'F32', copy, 0), -1);
  assert.deepEqual(Array.from(copy.subarray(0, 3)), [1, -0, 3.5]);
  assert.equal(widenChecked(f32.buffer, 0, 5, 'F32', copy, 0), 3);
  assert.equal(firstNonFiniteBits(f32.buffer, 16, 1, 'F32'), 0);
  assert.equal(elementValue(f32.buffer, 0, 3, 'F32'), Number.NEGATIVE_INFINITY);
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
