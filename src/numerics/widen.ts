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
