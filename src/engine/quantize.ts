// Block-wise symmetric int8 quantisation of W_enc into the layout of onnxruntime's MatMulNBits (com.microsoft),
// used by the opt-in `topk_int8` encode mode. Pure; runs in the engine worker on the float32 weights.
//
// For every SAE feature n and every block of INT8_BLOCK_SIZE consecutive input dimensions:
//   scale[n, b] = max_i |W[b*B + i, n]| / 127,   q = clamp(round(W / scale), -127, 127) + 128   (uint8)
// MatMulNBits dequantises (q - 128) * scale, 128 being its default zero point for 8 bits. With
// accuracy_level 4 it also quantises each input row block-wise to int8 (scale = max|x| / 127) and accumulates
// integer dot products: scripts/parity/reference.py implements exactly that in float64, and the int8 parity
// test holds the engine to it.

/** Input dimensions per quantisation block. 128 was the fastest of 32/128/256 at 576x4608 and 2560x40960. */
export const INT8_BLOCK_SIZE = 128;
/** MatMulNBits accuracy_level 4: int8 x int8 products (the fast path); lower levels dequantise to float32. */
export const INT8_ACCURACY_LEVEL = 4;

export interface Int8Encoder {
  /** [d_sae, numBlocks, blockSize] uint8, feature-major (MatMulNBits' B). */
  readonly packed: Uint8Array;
  /** [d_sae * numBlocks] float32. */
  readonly scales: Float32Array;
  readonly numBlocks: number;
  readonly blockSize: number;
}

/**
 * Quantises W_enc given as [d_model, d_sae] row-major, or as [d_sae, d_model] when `transposed` (sparsify's
 * encoder.weight). The last block is padded with the zero point when d_model is not a multiple of the block.
 */
export function quantizeEncoderInt8(encoder: Float32Array, dModel: number, dSae: number, transposed: boolean, blockSize = INT8_BLOCK_SIZE): Int8Encoder {
  const numBlocks = Math.ceil(dModel / blockSize);
  const packed = new Uint8Array(dSae * numBlocks * blockSize).fill(128);
  const scales = new Float32Array(dSae * numBlocks);
  const at = transposed ? (d: number, n: number) => encoder[n * dModel + d]! : (d: number, n: number) => encoder[d * dSae + n]!;
  for (let n = 0; n < dSae; n++) {
    for (let b = 0; b < numBlocks; b++) {
      const end = Math.min(dModel, (b + 1) * blockSize);
      let max = 0;
      for (let d = b * blockSize; d < end; d++) max = Math.max(max, Math.abs(at(d, n)));
      // Rounded to float32 first: the kernel multiplies by the stored float32 scale, so quantise with it too.
      const scale = Math.fround(max / 127);
      scales[n * numBlocks + b] = scale;
      if (scale === 0) continue; // an all-zero block stays at the zero point
      const base = (n * numBlocks + b) * blockSize - b * blockSize;
      for (let d = b * blockSize; d < end; d++) {
        const q = Math.max(-127, Math.min(127, roundHalfEven(at(d, n) / scale)));
        packed[base + d] = q + 128;
      }
    }
  }
  return { packed, scales, numBlocks, blockSize };
}

/** numpy's np.round rule (ties to even), so the float64 reference quantises identically. */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
