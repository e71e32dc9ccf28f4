// Validates the sequences of a score request against a pack and lays their bytes out for the engine.
// Shapes, dtypes, lengths and limits are checked here before any engine work starts, so a malformed sequence
// rejects the whole request and changes nothing. The rows themselves are copied once, still in their wire
// dtype, into the engine's shared slabs (one per chunk; from the wire bytes or, for shared memory, read
// straight from the region); the engine worker widens them to float32 and rejects
// NaN/Inf (prompt rows too) in the same pass, off the main thread (engine/worker.ts). Error messages name the
// field (sequences[i].<field>), what was expected and what came.
import { MechRewardError } from '../errors.js';
import { copyIntoShared } from '../engine/buffers.js';
import type { RowInput, RowPart } from '../engine/protocol.js';
import { DTYPE_BYTES, type WireDType } from '../numerics/widen.js';

/**
 * Activation bytes not in this process's memory yet (a shared-memory region): decoding copies them straight
 * into the engine's slab, so they are read once, with no intermediate buffer.
 */
export interface ActivationSource {
  readonly byteLength: number;
  /** Copies bytes [sourceOffset, sourceOffset + target.byteLength) into `target`; throws a MechRewardError when it cannot. */
  copyTo(target: Uint8Array, sourceOffset: number): void;
}

export interface SequenceInput {
  readonly activations: Uint8Array | ActivationSource;
  /** Wire enum name (DTYPE_F32 …) or number, as the transport delivered it. */
  readonly dtype: string | number;
  readonly num_tokens: number;
  readonly score_from: number;
  /** Optional response text, expected answer and per-token strings (canary text rule, monitor page). */
  readonly text?: string;
  readonly expected_answer?: string;
  readonly tokens?: readonly string[];
}

export interface DecodedBatch {
  /** Response rows of all sequences, in order, as engine inputs of at most `chunkRows` fed rows each. */
  readonly chunks: readonly RowInput[];
  readonly totalRows: number;
  /** Row offset of each sequence's first response token among all response rows. */
  readonly offsets: readonly number[];
}

/** Where the wire bytes go: a shared slab of at least this many bytes (the engine recycles them). */
export interface BufferSource {
  take(byteLength: number): { readonly id: number; readonly bytes: SharedArrayBuffer };
  /** Hands back a slab taken by this call when decoding fails after all (a source that cannot be read). */
  giveBack(id: number): void;
}

const DTYPES: Record<string, WireDType> = { DTYPE_F32: 'F32', DTYPE_F16: 'F16', DTYPE_BF16: 'BF16', '1': 'F32', '2': 'F16', '3': 'BF16' };

export interface DecodeLimits {
  readonly maxTokensPerRequest: number;
  readonly maxSequencesPerRequest: number;
  /** Reject zero-norm rows: a pack that normalises by the norm would divide by zero. */
  readonly rejectZeroNorm: boolean;
}

function bad(code: 'MR_ERR_INVALID_TENSOR' | 'MR_ERR_INVALID_ARGUMENT' | 'MR_ERR_NONFINITE_INPUT' | 'MR_ERR_EMPTY_INPUT', message: string): MechRewardError {
  return new MechRewardError(code, message);
}

/** Each part starts on an 8-byte boundary, so the worker can read it through 32-bit views. */
const PART_ALIGN = 8;

/**
 * @param chunkRows most fed (response) rows per engine input; prompt rows travel, check-only, with the chunk
 *   holding their sequence's first response rows.
 */
export function decodeSequences(sequences: readonly SequenceInput[], dModel: number, packName: string, limits: DecodeLimits, chunkRows: number, buffer: BufferSource): DecodedBatch {
  if (sequences.length === 0) throw bad('MR_ERR_EMPTY_INPUT', 'sequences: must hold at least one sequence');
  if (sequences.length > limits.maxSequencesPerRequest) {
    throw new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `sequences: ${sequences.length} sequences in one request exceed max_sequences_per_request ${limits.maxSequencesPerRequest}; split the batch`);
  }
  const dtypes: WireDType[] = [];
  let totalTokens = 0;
  let totalRows = 0;
  sequences.forEach((s, i) => {
    const field = `sequences[${i}]`;
    const dtype = DTYPES[String(s.dtype)];
    if (!dtype) throw bad('MR_ERR_INVALID_ARGUMENT', `${field}.dtype: ${JSON.stringify(s.dtype)} is not a supported dtype (DTYPE_F32, DTYPE_F16, DTYPE_BF16)`);
    dtypes.push(dtype);
    if (!Number.isSafeInteger(s.num_tokens) || s.num_tokens < 1) throw bad('MR_ERR_INVALID_ARGUMENT', `${field}.num_tokens: must be at least 1, got ${s.num_tokens}`);
    if (!Number.isSafeInteger(s.score_from) || s.score_from >= s.num_tokens) {
      throw bad('MR_ERR_INVALID_ARGUMENT', `${field}.score_from: ${s.score_from} leaves no response token to score (num_tokens = ${s.num_tokens}; score_from must be < num_tokens)`);
    }
    if (s.tokens && s.tokens.length > 0 && s.tokens.length !== s.num_tokens) {
      throw bad('MR_ERR_INVALID_ARGUMENT', `${field}.tokens: ${s.tokens.length} strings for ${s.num_tokens} tokens; send one per token or none`);
    }
    const width = DTYPE_BYTES[dtype];
    const expected = s.num_tokens * dModel * width;
    const got = s.activations.byteLength;
    if (got !== expected) {
      const impliedDModel = got % (s.num_tokens * width) === 0 ? got / (s.num_tokens * width) : undefined;
      const hint = impliedDModel !== undefined ? `; that is d_model ${impliedDModel}, pack ${packName} expects d_model ${dModel}` : '';
      throw bad('MR_ERR_INVALID_TENSOR', `${field}.activations: expected ${expected} bytes (num_tokens ${s.num_tokens} x d_model ${dModel} x ${width} bytes ${dtype}), got ${got}${hint}`);
    }
    if (limits.rejectZeroNorm) checkNonZero(inMemory(s.activations), i, s.score_from, s.num_tokens, dModel * width, width);
    totalTokens += s.num_tokens;
    totalRows += s.num_tokens - s.score_from;
  });
  if (totalTokens > limits.maxTokensPerRequest) {
    throw new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `sequences: ${totalTokens} tokens in one request exceed max_tokens_per_request ${limits.maxTokensPerRequest}; split the batch`);
  }

  // Lay the rows out in chunks: for each sequence its prompt rows (checked only), then its response rows
  // (fed to the graph), split wherever a chunk reaches chunkRows fed rows.
  interface Planned { part: RowPart; src: Uint8Array | ActivationSource; start: number; length: number }
  const planned: Planned[][] = [[]];
  const offsets: number[] = [];
  let fed = 0;
  let row = 0;
  sequences.forEach((s, i) => {
    const dtype = dtypes[i]!;
    const rowBytes = dModel * DTYPE_BYTES[dtype];
    offsets.push(row);
    const add = (firstToken: number, rows: number, feed: boolean): void => {
      planned[planned.length - 1]!.push({ part: { dtype, byteOffset: 0, rows, feed, seq: i, firstToken }, src: s.activations, start: firstToken * rowBytes, length: rows * rowBytes });
    };
    if (fed === chunkRows) (planned.push([]), (fed = 0));
    if (s.score_from > 0) add(0, s.score_from, false);
    for (let token = s.score_from; token < s.num_tokens; ) {
      if (fed === chunkRows) (planned.push([]), (fed = 0));
      const rows = Math.min(chunkRows - fed, s.num_tokens - token);
      add(token, rows, true);
      fed += rows;
      token += rows;
    }
    row += s.num_tokens - s.score_from;
  });
  const chunks: RowInput[] = [];
  try {
    for (const list of planned) {
      let size = 0;
      const parts = list.map(({ part, length }) => {
        const placed = { ...part, byteOffset: size };
        size += Math.ceil(length / PART_ALIGN) * PART_ALIGN;
        return placed;
      });
      const slab = buffer.take(size);
      const bytes = slab.bytes;
      chunks.push({ slab: slab.id, bytes, parts, numRows: parts.reduce((n, p) => n + (p.feed ? p.rows : 0), 0) });
      // The one copy of the bytes: out of grpc-js's receive buffer (unaligned views) or out of a region.
      list.forEach(({ src, start, length }, k) => {
        const target = new Uint8Array(bytes, parts[k]!.byteOffset, length);
        if (src instanceof Uint8Array) copyIntoShared(target, src.subarray(start, start + length));
        else src.copyTo(target, start);
      });
    }
  } catch (err) {
    for (const c of chunks) buffer.giveBack(c.slab);
    throw err;
  }
  return { chunks, totalRows, offsets };
}

/** The bytes of a source that is not in memory, read whole (only the zero-norm check needs them up front). */
function inMemory(activations: Uint8Array | ActivationSource): Uint8Array {
  if (activations instanceof Uint8Array) return activations;
  const out = new Uint8Array(activations.byteLength);
  activations.copyTo(out, 0);
  return out;
}

/**
 * A response row whose every element is ±0, read byte by byte from the (possibly unaligned) wire bytes: each
 * element's last byte holds the sign bit (little-endian), which is ignored.
 */
function checkNonZero(bytes: Uint8Array, seq: number, firstToken: number, numTokens: number, rowBytes: number, width: number): void {
  for (let t = firstToken; t < numTokens; t++) {
    let nonZero = false;
    for (let b = t * rowBytes, end = b + rowBytes; b < end && !nonZero; b++) nonZero = (bytes[b]! & ((b + 1) % width === 0 ? 0x7f : 0xff)) !== 0;
    if (!nonZero) throw bad('MR_ERR_INVALID_TENSOR', `sequences[${seq}].activations: token ${t} is all zeros; this pack normalises each token by its norm`);
  }
}
