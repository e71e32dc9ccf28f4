// Stage gate 1 enforcement: a pack is served only if its validation block shows a held-out Spearman rho of at
// least 0.30, with n and the sha256 of the data it was measured on (and that data, when shipped, still hashes
// the same), measured with the encode mode the pack serves. `serve --allow-unvalidated` overrides, loudly.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { Pack } from './registry.js';

export const PASS_THRESHOLD = 0.3;

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** Why `pack` may not be served without --allow-unvalidated, or undefined when it passes. */
export function validationProblem(pack: Pack): string | undefined {
  const v = pack.spec.validation;
  const rerun = `run \`mechreward gate g1 --pack ${pack.dir}\``;
  if (!v.present) return `no validation block; ${rerun}`;
  if (!(v.n > 0)) return `validation block has no n; ${rerun}`;
  if (!v.dataSha256) return `validation block has no data_sha256 (the held-out data it was measured on); ${rerun}`;
  if (!Number.isFinite(v.spearmanRho)) return `validation block has no rho; ${rerun}`;
  if (v.spearmanRho < PASS_THRESHOLD) return `stage gate 1 failed: held-out rho ${v.spearmanRho.toFixed(3)} < ${PASS_THRESHOLD} (n = ${v.n})`;
  if (v.kind && v.kind !== pack.spec.kind) return `validated as a ${v.kind} pack but is a ${pack.spec.kind} pack; ${rerun}`;
  if (pack.spec.kind === 'sae' && v.encode && v.encode !== pack.spec.encode) return `validated with encode ${v.encode} but serves ${pack.spec.encode}`;
  if (v.data) {
    const file = path.resolve(pack.dir, v.data);
    if (existsSync(file) && sha256File(file) !== v.dataSha256) return `held-out data ${file} changed since validation (sha256 differs); ${rerun}`;
  }
  return undefined;
}
