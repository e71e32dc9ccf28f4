// Validates the sequences of a score request against a pack and decodes their response rows to float32.
// Everything is checked before any engine work starts, so a bad sequence rejects the whole request and
// changes nothing. Error messages name the field (sequences[i].<field>), what was expected and what came.
import { MechRewardError } from '../errors.js';
import { DTYPE_BYTES, firstNonFinite, widenInto, type WireDType } from '../numerics/widen.js';

export interface SequenceInput {
  readonly activations: Uint8Array;
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
  /** Response rows of all sequences, in order, row-major [totalRows, dModel]. */
  readonly rows: Float32Array;
  readonly totalRows: number;
  /** Row offset of each sequence's first response token in `rows`. */
  readonly offsets: readonly number[];
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

export function decodeSequences(sequences: readonly SequenceInput[], dModel: number, packName: string, limits: DecodeLimits): DecodedBatch {
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
    totalTokens += s.num_tokens;
    totalRows += s.num_tokens - s.score_from;
  });
  if (totalTokens > limits.maxTokensPerRequest) {
    throw new MechRewardError('MR_ERR_REQUEST_TOO_LARGE', `sequences: ${totalTokens} tokens in one request exceed max_tokens_per_request ${limits.maxTokensPerRequest}; split the batch`);
  }

  // Only response rows go to the engine; prompt rows are decoded into scratch space solely to reject NaN/Inf.
  const rows = new Float32Array(totalRows * dModel);
  const offsets: number[] = [];
  let scratch = new Float32Array(0);
  let row = 0;
  sequences.forEach((s, i) => {
    const dtype = dtypes[i]!;
    const rowBytes = dModel * DTYPE_BYTES[dtype];
    offsets.push(row);
    if (s.score_from > 0) {
      if (scratch.length < s.score_from * dModel) scratch = new Float32Array(s.score_from * dModel);
      widenInto(s.activations.subarray(0, s.score_from * rowBytes), dtype, scratch, 0);
      checkFinite(scratch, 0, s.score_from * dModel, dModel, i, 0);
    }
    widenInto(s.activations.subarray(s.score_from * rowBytes), dtype, rows, row * dModel);
    checkFinite(rows, row * dModel, (row + s.num_tokens - s.score_from) * dModel, dModel, i, s.score_from - row);
    if (limits.rejectZeroNorm) checkNonZero(rows, row, s.num_tokens - s.score_from, dModel, i, s.score_from);
    row += s.num_tokens - s.score_from;
  });
  return { rows, totalRows, offsets };
}

/** `tokenShift` converts a row index in `values` to the sequence's token index. */
function checkFinite(values: Float32Array, from: number, to: number, dModel: number, seq: number, tokenShift: number): void {
  const at = firstNonFinite(values, from, to);
  if (at < 0) return;
  const v = values[at]!;
  const token = Math.floor(at / dModel) + tokenShift;
  throw bad('MR_ERR_NONFINITE_INPUT', `sequences[${seq}].activations: ${Number.isNaN(v) ? 'NaN' : String(v)} at token ${token}, dim ${at % dModel}; activations must be finite`);
}

function checkNonZero(rows: Float32Array, firstRow: number, count: number, dModel: number, seq: number, firstToken: number): void {
  for (let r = 0; r < count; r++) {
    let nonZero = false;
    const base = (firstRow + r) * dModel;
    for (let d = 0; d < dModel && !nonZero; d++) nonZero = rows[base + d] !== 0;
    if (!nonZero) throw bad('MR_ERR_INVALID_TENSOR', `sequences[${seq}].activations: token ${firstToken + r} is all zeros; this pack normalises each token by its norm`);
  }
}
