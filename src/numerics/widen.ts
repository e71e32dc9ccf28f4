// Exact widening of little-endian F32 / F16 / BF16 bytes to float32. Every F16 and BF16 value is representable
// in float32, so nothing is rounded. Used for SAE weights (safetensors) and for request activations.

export type WireDType = 'F32' | 'F16' | 'BF16';
export const DTYPE_BYTES: Record<WireDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** IEEE 754 binary16 bits to a number; exact, including subnormals, infinities and NaN. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

// 65,536 entries (256 KiB): a table lookup is several times faster than decoding bits per element.
let halfTable: Float32Array | undefined;
function getHalfTable(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/**
 * Widens `bytes` into `out` starting at element `outOffset`. `bytes` may be unaligned (grpc-js hands out
 * Buffers at odd offsets), so the source is read through a copy or a DataView, never a typed-array view.
 */
export function widenInto(bytes: Uint8Array, dtype: WireDType, out: Float32Array, outOffset = 0): void {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  if (dtype === 'F32') {
    new Uint8Array(out.buffer, out.byteOffset + outOffset * 4, n * 4).set(bytes);
    return;
  }
  // Copy to an aligned buffer once so the loop can use a Uint16Array view (little-endian hosts only;
  // checked at start-up by assertLittleEndianHost).
  const aligned = new Uint16Array(n);
  new Uint8Array(aligned.buffer).set(bytes);
  if (dtype === 'BF16') {
    const bits = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, n);
    for (let i = 0; i < n; i++) bits[i] = aligned[i]! << 16;
  } else {
    const table = getHalfTable();
    for (let i = 0; i < n; i++) out[outOffset + i] = table[aligned[i]!]!;
  }
}

export function widenToFloat32(bytes: Uint8Array, dtype: WireDType): Float32Array {
  const out = new Float32Array(bytes.byteLength / DTYPE_BYTES[dtype]);
  widenInto(bytes, dtype, out);
  return out;
}

/** Index of the first NaN or infinity in `values[from, to)`, or -1. */
export function firstNonFinite(values: Float32Array, from = 0, to = values.length): number {
  for (let i = from; i < to; i++) {
    // v - v is NaN exactly when v is NaN or ±Infinity; cheaper than Number.isFinite on a hot loop.
    const v = values[i]!;
    if (v - v !== 0) return i;
  }
  return -1;
}

export function assertLittleEndianHost(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('mechreward needs a little-endian host: wire tensors are little-endian and read through typed arrays');
  }
}

// Row blocks as the engine receives them: the wire's bytes copied once into a 4-byte-aligned (shared) buffer and
// widened in the engine worker, off the main thread. Widening and the finiteness check are one pass: every
// element is read once as an integer, and a non-finite value is recognised by its exponent bits (all ones)
// while the bits are in a register. An exponent field e is all ones iff e + (its lowest bit) carries into the
// bit above it, so one add per word flags both halves of a bf16/f16 pair. Only when a block is flagged is it
// scanned again, to name the first bad element.

/** Per dtype: the exponent mask of one element, the carry-in that overflows an all-ones exponent, the flag bit. */
const EXP_BITS: Record<WireDType, { mask: number; carry: number; flag: number }> = {
  F32: { mask: 0x7f800000, carry: 0x00800000, flag: 0x80000000 | 0 },
  BF16: { mask: 0x7f807f80, carry: 0x00800080, flag: 0x80008000 | 0 },
  F16: { mask: 0x7c007c00, carry: 0x04000400, flag: 0x80008000 | 0 },
};

/** Index of the first non-finite element among `count` elements of `dtype` at `byteOffset`, by their bits. */
function locateNonFinite(src: ArrayBufferLike, byteOffset: number, count: number, dtype: WireDType): number {
  if (dtype === 'F32') {
    const bits = new Uint32Array(src, byteOffset, count);
    for (let i = 0; i < count; i++) if ((bits[i]! & 0x7f800000) === 0x7f800000) return i;
  } else {
    const bits = new Uint16Array(src, byteOffset, count);
    const mask = dtype === 'BF16' ? 0x7f80 : 0x7c00;
    for (let i = 0; i < count; i++) if ((bits[i]! & mask) === mask) return i;
  }
  return -1;
}

/**
 * Widens `count` elements of `dtype` stored at `byteOffset` of `src` (a multiple of 4) into `out` from element
 * `outOffset`, exactly as widenInto does, and returns the index of the first NaN or infinity, or -1. The
 * elements are written even when one is not finite (the caller discards the block).
 */
export function widenChecked(src: ArrayBufferLike, byteOffset: number, count: number, dtype: WireDType, out: Float32Array, outOffset: number): number {
  const dst = new Uint32Array(out.buffer, out.byteOffset + outOffset * 4, count);
  const { mask, carry, flag } = EXP_BITS[dtype];
  let acc = 0;
  if (dtype === 'F32') {
    const words = new Uint32Array(src, byteOffset, count);
    for (let i = 0; i < count; i++) {
      const w = words[i]!;
      dst[i] = w;
      acc |= ((w & mask) + carry) | 0;
    }
  } else {
    const pairs = count >>> 1;
    const words = new Uint32Array(src, byteOffset, pairs);
    if (dtype === 'BF16') {
      // Two bf16 values per 32-bit word (little-endian): the low half is element 2i, the high half 2i+1.
      for (let i = 0, j = 0; i < pairs; i++, j += 2) {
        const w = words[i]!;
        dst[j] = w << 16;
        dst[j + 1] = w & 0xffff0000;
        acc |= ((w & mask) + carry) | 0;
      }
    } else {
      const table = getHalfTable();
      const f = new Float32Array(dst.buffer, dst.byteOffset, count);
      for (let i = 0, j = 0; i < pairs; i++, j += 2) {
        const w = words[i]!;
        f[j] = table[w & 0xffff]!;
        f[j + 1] = table[w >>> 16]!;
        acc |= ((w & mask) + carry) | 0;
      }
    }
    if (count & 1) {
      // An odd element count: the last element alone (its word's high half is not ours).
      const h = new Uint16Array(src, byteOffset + 2 * (count - 1), 1)[0]!;
      if (dtype === 'BF16') dst[count - 1] = h << 16;
      else new Float32Array(dst.buffer, dst.byteOffset, count)[count - 1] = getHalfTable()[h]!;
      acc |= ((h & (mask & 0xffff)) + (carry & 0xffff)) | 0;
    }
  }
  return (acc & flag) === 0 ? -1 : locateNonFinite(src, byteOffset, count, dtype);
}

/** The first non-finite element among `count` elements of `dtype` at `byteOffset` (a multiple of 4), or -1. */
export function firstNonFiniteBits(src: ArrayBufferLike, byteOffset: number, count: number, dtype: WireDType): number {
  const { mask, carry, flag } = EXP_BITS[dtype];
  const n = dtype === 'F32' ? count : count >>> 1;
  const words = new Uint32Array(src, byteOffset, n);
  let acc = 0;
  for (let i = 0; i < n; i++) acc |= ((words[i]! & mask) + carry) | 0;
  if (dtype !== 'F32' && count & 1) acc |= ((new Uint16Array(src, byteOffset + 2 * (count - 1), 1)[0]! & (mask & 0xffff)) + (carry & 0xffff)) | 0;
  return (acc & flag) === 0 ? -1 : locateNonFinite(src, byteOffset, count, dtype);
}

/** The value of element `index` of `dtype` at `byteOffset`, widened (for error messages). */
export function elementValue(src: ArrayBufferLike, byteOffset: number, index: number, dtype: WireDType): number {
  if (dtype === 'F32') return new Float32Array(src, byteOffset + 4 * index, 1)[0]!;
  const h = new Uint16Array(src, byteOffset + 2 * index, 1)[0]!;
  return dtype === 'BF16' ? new Float32Array(new Uint32Array([h << 16]).buffer)[0]! : halfToFloat(h);
}
