// The one run_id rule, for every transport and every route that takes one (Score over gRPC and HTTP, GetRun,
// GET /v1/runs/:run_id). An id is 1-128 characters from letters, digits and `. _ - :`, starting with a letter
// or digit: wandb run ids, names and timestamps fit, and every accepted id is one plain URL path segment
// (nothing to percent-encode, no `/`), so the monitor page and GET /v1/runs/:run_id reach each of them.
// The empty string means "no run" on Score and is not an id.
import { MechRewardError } from '../errors.js';

export const RUN_ID_MAX_LENGTH = 128;
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

export const RUN_ID_RULE = `1-${RUN_ID_MAX_LENGTH} characters of letters, digits and . _ - :, starting with a letter or digit`;

export function isValidRunId(id: string): boolean {
  return RUN_ID.test(id);
}

/** Throws MR_ERR_INVALID_ARGUMENT naming run_id unless `id` is empty (no run) or a valid run id. */
export function checkRunId(id: unknown, allowEmpty = true): void {
  if (typeof id !== 'string') throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', 'run_id: must be a string');
  if (id === '' && allowEmpty) return;
  if (!isValidRunId(id)) {
    const shown = id.length > 40 ? `${JSON.stringify(id.slice(0, 40))}... (${id.length} characters)` : JSON.stringify(id);
    throw new MechRewardError('MR_ERR_INVALID_ARGUMENT', `run_id: ${shown} is not a valid run id (${RUN_ID_RULE})`);
  }
}
