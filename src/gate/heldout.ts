// Held-out data of a pack: one safetensors file with `activations` [total_tokens, d_model] (F32, F16 or BF16:
// prompt + response residuals of every held-out response, concatenated) and, in `__metadata__.responses`, a
// JSON list of {id, offset, num_tokens, score_from, correct}. Everything the gate needs, hashed as one file.
import { MechRewardError } from '../errors.js';
import { DTYPE_BYTES } from '../numerics/widen.js';
import { readSafetensorsHeader, readTensorBytes } from '../packs/safetensors.js';
import { sha256File } from '../packs/validation.js';

export interface HeldOutResponse {
  readonly id: string;
  readonly offset: number;
  readonly numTokens: number;
  readonly scoreFrom: number;
  readonly correct: 0 | 1;
}

export interface HeldOutData {
  readonly path: string;
  readonly sha256: string;
  readonly dModel: number;
  readonly dtype: 'DTYPE_F32' | 'DTYPE_F16' | 'DTYPE_BF16';
  readonly bytesPerToken: number;
  /** Raw little-endian activation bytes, row-major [total_tokens, d_model]. */
  readonly activations: Buffer;
  readonly responses: readonly HeldOutResponse[];
}

export function loadHeldOut(path: string): HeldOutData {
  const fail = (what: string): never => {
    throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${path}: ${what}`);
  };
  const header = readSafetensorsHeader(path);
  const entry = header.tensors.get('activations') ?? fail('no tensor named activations');
  if (entry.shape.length !== 2) fail(`activations has shape [${entry.shape.join(', ')}], expected [total_tokens, d_model]`);
  const [totalTokens, dModel] = entry.shape as [number, number];
  let raw: unknown;
  try {
    raw = JSON.parse(header.metadata.responses ?? fail('__metadata__ has no "responses"'));
  } catch (err) {
    if (err instanceof MechRewardError) throw err;
    fail('__metadata__.responses is not JSON');
  }
  if (!Array.isArray(raw) || raw.length === 0) fail('__metadata__.responses must be a non-empty list');
  const responses = (raw as Record<string, unknown>[]).map((r, i): HeldOutResponse => {
    const int = (k: string) => (Number.isSafeInteger(r[k]) && (r[k] as number) >= 0 ? (r[k] as number) : fail(`responses[${i}].${k} must be a non-negative integer`));
    const offset = int('offset');
    const numTokens = int('num_tokens');
    const scoreFrom = int('score_from');
    if (r.correct !== 0 && r.correct !== 1 && r.correct !== true && r.correct !== false) fail(`responses[${i}].correct must be 0 or 1`);
    if (offset + numTokens > totalTokens) fail(`responses[${i}] runs past the end of activations (${offset} + ${numTokens} > ${totalTokens})`);
    if (scoreFrom >= numTokens) fail(`responses[${i}].score_from ${scoreFrom} leaves no response token (num_tokens ${numTokens})`);
    return { id: String(r.id ?? i), offset, numTokens, scoreFrom, correct: r.correct === 1 || r.correct === true ? 1 : 0 };
  });
  return {
    path,
    sha256: sha256File(path),
    dModel,
    dtype: `DTYPE_${entry.dtype}` as HeldOutData['dtype'],
    bytesPerToken: dModel * DTYPE_BYTES[entry.dtype],
    activations: readTensorBytes(path, entry),
    responses,
  };
}
