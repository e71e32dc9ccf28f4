// Discovery data: the held-out data format (gate/heldout.ts) used for the DISCOVERY split, plus optional token
// strings per row (`tokens` in each response record, one string per row, prompt rows included) for
// ReasonScore. Rows are widened to float32 once.
import { MechRewardError } from '../errors.js';
import { loadHeldOut, type HeldOutData, type HeldOutResponse } from '../gate/heldout.js';
import { readSafetensorsHeader } from '../packs/safetensors.js';
import { widenToFloat32 } from '../numerics/widen.js';

export interface DiscoveryData {
  readonly path: string;
  readonly sha256: string;
  readonly dModel: number;
  readonly responses: readonly HeldOutResponse[];
  /** All rows, float32, row-major [total_tokens, d_model]. */
  readonly rows: Float32Array;
  /** Token strings per response (one per row), when the file carries them. */
  readonly tokens: readonly (readonly string[])[] | undefined;
}

export function loadDiscovery(path: string): DiscoveryData {
  const held: HeldOutData = loadHeldOut(path);
  const raw = JSON.parse(readSafetensorsHeader(path).metadata.responses!) as Record<string, unknown>[];
  let tokens: string[][] | undefined;
  if (raw.some((r) => r.tokens !== undefined)) {
    tokens = raw.map((r, i) => {
      const t = r.tokens;
      if (!Array.isArray(t) || t.some((s) => typeof s !== 'string')) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${path}: responses[${i}].tokens must be a list of strings (every response needs it when one has it)`);
      if (t.length !== held.responses[i]!.numTokens) throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `${path}: responses[${i}].tokens has ${t.length} strings for ${held.responses[i]!.numTokens} rows`);
      return t as string[];
    });
  }
  return { path, sha256: held.sha256, dModel: held.dModel, responses: held.responses, rows: widenToFloat32(held.activations, held.dtype.slice('DTYPE_'.length) as 'F32' | 'F16' | 'BF16'), tokens };
}

/** Each response's mean residual over its response rows (score_from onwards), float64: [n][d_model]. */
export function meanPooledResiduals(data: DiscoveryData): Float64Array[] {
  const d = data.dModel;
  return data.responses.map((r) => {
    const out = new Float64Array(d);
    for (let t = r.offset + r.scoreFrom; t < r.offset + r.numTokens; t++) for (let j = 0; j < d; j++) out[j]! += data.rows[t * d + j]!;
    const n = r.numTokens - r.scoreFrom;
    for (let j = 0; j < d; j++) out[j]! /= n;
    return out;
  });
}
