// Transport-neutral descriptions of packs and of the server, shared by gRPC (ListPacks, GetInfo) and HTTP.
import { packLayer, poolingLabel, type Pack } from '../packs/registry.js';
import { validationProblem } from '../packs/validation.js';

export interface PackDescription {
  name: string;
  model: string;
  layer: number;
  d_model: number;
  d_sae: number;
  k: number;
  architecture: string;
  encode_mode: string;
  feature_count: number;
  validation: {
    present: boolean;
    verdict: string;
    spearman_rho: number;
    n: number;
    method: string;
    p: number;
    ci_low: number;
    ci_high: number;
    data_sha256: string;
    encode_mode: string;
    /** Passes stage gate 1 as enforced by serve. */
    passes: boolean;
    /** Why it does not pass ('' when it does). */
    problem: string;
  };
  pooling: string;
  canaries: string[];
  schema: string;
  sae_format: string;
  synthetic: boolean;
  description: string;
  /** sae | direction | probe */
  kind: string;
  /** The dual verifier's mode ('' when the pack has none). */
  verifier_mode: string;
}

export function describePack(pack: Pack): PackDescription {
  const { spec, sae } = pack;
  const v = spec.validation;
  const problem = validationProblem(pack);
  return {
    name: pack.name,
    model: spec.model,
    layer: packLayer(pack) ?? -1,
    d_model: pack.dModel,
    d_sae: sae?.dSae ?? 0,
    k: sae?.k ?? 0,
    // Direction and probe packs have no SAE: their architecture is their kind.
    architecture: sae?.architecture ?? spec.kind,
    encode_mode: spec.kind === 'sae' ? spec.encode : '',
    feature_count: spec.features.length,
    validation: {
      present: v.present,
      verdict: v.verdict,
      spearman_rho: v.spearmanRho,
      n: v.n,
      method: v.method,
      p: v.p,
      ci_low: v.ci[0],
      ci_high: v.ci[1],
      data_sha256: v.dataSha256,
      encode_mode: v.encode,
      passes: problem === undefined,
      problem: problem ?? '',
    },
    pooling: poolingLabel(pack),
    canaries: spec.canaries.map((c) => c.name),
    schema: spec.schema,
    sae_format: sae?.format ?? '',
    synthetic: spec.synthetic,
    description: spec.description,
    kind: spec.kind,
    verifier_mode: spec.verifier?.mode ?? '',
  };
}
